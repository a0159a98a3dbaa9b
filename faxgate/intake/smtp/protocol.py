"""The SMTP protocol as faxgate speaks it: aiosmtpd's SMTP with the connection limits, long
command lines, DATA read in bulk (faxgate.intake.smtp.data) and a connection that knows
when its message is being stored. What each command means is the handler's."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, AnyStr, Final

from aiosmtpd.smtp import SMTP, Envelope, syntax

from faxgate import metrics
from faxgate.intake.smtp.accept import Fax
from faxgate.intake.smtp.data import MessageTooBig, read_message

if TYPE_CHECKING:
    from faxgate.intake.smtp.handler import SmtpHandler

log = logging.getLogger("faxgate.smtp")


# RFC 5321 allows command lines of 512 bytes; a little more leaves room for AUTH lines.
COMMAND_LINE_LIMIT: Final = 4096


class FaxEnvelope(Envelope):
    """aiosmtpd's envelope, plus the fax numbers its recipients named."""

    def __init__(self) -> None:
        super().__init__()
        self.faxes: dict[str, Fax] = {}  # by E.164: one fax per number, however written
        self.from_subject: list[str] = []  # shared addresses: numbers from the subject


class ConnectionGate:
    """Connections at once, in all and per client address. Each may hold up to a
    message's size while it arrives, so past either limit a new one is turned away."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self._open: Counter[str] = Counter()

    def enter(self, client: str) -> str | None:
        """None when `client` may come in (it is counted), else the reply to close with."""
        if self._open.total() >= self.total:
            return "421 4.7.0 too many connections; try again later"
        if self._open[client] >= self.per_client:
            return "421 4.7.0 too many connections from your address; try again later"
        self._open[client] += 1
        return None

    def leave(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class FaxSMTP(SMTP):
    """aiosmtpd's protocol with faxgate's limits and wording."""

    def __init__(
        self,
        handler: SmtpHandler,
        *,
        max_line: int,
        gate: ConnectionGate,
        on_lost: Callable[[FaxSMTP], None],
        **kw: Any,
    ) -> None:
        # A command line past this is drained and refused, never kept whole. aiosmtpd
        # reads the limit in its constructor, so it is set first.
        self.line_length_limit = COMMAND_LINE_LIMIT
        self._data_line_limit = max_line
        self._gate = gate
        self._admitted: str | None = None  # the client address, once let in
        self._turned_away = False
        self._on_lost = on_lost
        self.storing = False  # between the end of DATA and its answer
        super().__init__(handler, **kw)

    def _create_envelope(self) -> FaxEnvelope:
        return FaxEnvelope()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        """aiosmtpd's DATA, reading the message in bulk (faxgate.intake.smtp.data)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await self._read_data()
        except MessageTooBig:
            self.envelope = self._create_envelope()
            await self.push(self._too_big())
            return
        except asyncio.IncompleteReadError:
            self._writer.close()  # the client left mid-message
            return
        except asyncio.CancelledError:
            self._writer.close()  # the connection is gone, as aiosmtpd does
            raise
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        await self.push(status if isinstance(status, str) else "250 OK")

    async def _read_data(self) -> bytes:
        """The message, the stream taking lines as long as the size limit allows while it
        is read: scanners send base64 without line breaks."""
        reader = self._reader
        reader._limit = self._data_line_limit  # type: ignore[attr-defined]  # asyncio's own
        try:
            return await read_message(reader, self.data_size_limit)
        finally:
            reader._limit = COMMAND_LINE_LIMIT  # type: ignore[attr-defined]

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            await super().push(self._reworded(status))
        else:
            await super().push(status)
        if self.storing and _is_final_reply(status):
            self.storing = False

    def _reworded(self, status: str) -> str:
        """aiosmtpd's own refusals, with enhanced status codes; counted."""
        if status.startswith("552 Error: message size"):  # SIZE= over the limit at MAIL
            return self._too_big()
        if status.startswith("530 Must issue a STARTTLS"):
            metrics.smtp_refused.labels(reason="tls_required").inc()
            return "530 5.7.0 must issue a STARTTLS command first"
        if status.startswith("535 "):
            metrics.smtp_refused.labels(reason="auth_failed").inc()
        if status.startswith("553 5.1.3 Error: malformed address"):  # "a@b@c", "a@b."
            metrics.smtp_refused.labels(reason="malformed").inc()
        return status

    def _too_big(self) -> str:
        metrics.smtp_refused.labels(reason="too_big").inc()
        return f"552 5.3.4 message too big: at most {self.data_size_limit} bytes"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not the TLS transport after STARTTLS: a new client
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            refusal = self._gate.enter(client)
            if refusal is not None:
                self._turned_away = True
                metrics.smtp_refused.labels(reason="connections").inc()
                log.warning("smtp connection turned away peer=%s reply=%r", client, refusal)
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"{refusal}\r\n".encode())
                transport.close()
                return
            self._admitted = client
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._turned_away:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._turned_away else super().eof_received()

    def connection_lost(self, error: Exception | None) -> None:
        if not self._turned_away:
            super().connection_lost(error)
        if self._admitted is not None:
            self._gate.leave(self._admitted)
            self._admitted = None
        self._on_lost(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _is_final_reply(status: str | bytes) -> bool:
    text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
    text = text.rsplit("\r\n", 1)[-1]  # a multiline reply ends with its last line
    return len(text) >= 4 and text[:3].isdigit() and text[3] == " "
