"""The SMTP listener: the server on faxgate's own loop (aiosmtpd's controllers start their
own), its TLS, and a stop that stops listening, lets messages being stored finish, then
closes every connection."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Final

from faxgate.domain.addressing import AddressBook
from faxgate.domain.jobs import Job
from faxgate.intake.contacts import ContactsUnreadable, read_address_book
from faxgate.intake.smtp.accept import MailIntake
from faxgate.intake.smtp.auth import Authenticator, AuthLimiter
from faxgate.intake.smtp.handler import HandlerConfig, SmtpHandler
from faxgate.intake.smtp.policy import (
    exposure_problem,
)
from faxgate.intake.smtp.protocol import ConnectionGate, FaxSMTP
from faxgate.intake.smtp.reader import MessageReader
from faxgate.settings import Settings, SmtpSettings
from faxgate.store import Store
from faxgate.store.spool import Spool

log = logging.getLogger("faxgate.smtp")

STOP_GRACE: Final = 10.0  # seconds a stop waits for messages being stored
AUTH_TRIES: Final = 5  # AUTH commands per connection before it is closed
_UNLIMITED: Final = 10**9


class SmtpSetupError(Exception):
    """The listener cannot start with these settings; the message says why."""


class SmtpListener:
    """A running listener: its port, and how to stop it."""

    def __init__(
        self, server: asyncio.Server, handler: SmtpHandler, connections: set[FaxSMTP]
    ) -> None:
        self._server = server
        self.handler = handler
        self._connections = connections
        self._stopped = False

    @property
    def port(self) -> int:
        sockets: Sequence[Any] = self._server.sockets
        return int(sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return str(self._server.sockets[0].getsockname()[0])

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop listening; let messages being stored get their answer; close the rest."""
        if self._stopped:
            return
        self._stopped = True
        self._server.close()
        for connection in list(self._connections):
            if not connection.storing:
                connection.close()
        deadline = asyncio.get_running_loop().time() + grace
        if self.handler.accepting:
            await asyncio.wait(list(self.handler.accepting), timeout=grace)
        while any(c.storing for c in self._connections):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.01)  # the answer is being written
        for connection in list(self._connections):
            connection.close()
        await self.handler.intake.committer.idle()
        await self.handler.reader.close()
        await self._server.wait_closed()
        log.info("smtp listener stopped")


def tls_context(smtp: SmtpSettings) -> ssl.SSLContext | None:
    if not smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(smtp.tls_cert, smtp.tls_key)
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise SmtpSetupError(
            f"cannot load smtp.tls_cert {smtp.tls_cert} and smtp.tls_key: {reason}"
        ) from None
    return context


async def start_smtp(
    settings: Settings,
    store: Store,
    spool: Spool,
    *,
    on_accept: Callable[[list[Job]], None] = lambda _jobs: None,
) -> SmtpListener:
    """Listen on settings.smtp.listen. Raises SmtpSetupError for settings that cannot be
    used (an open relay, unreadable TLS files) and OSError when the address is taken."""
    smtp = settings.smtp
    problem = exposure_problem(
        smtp.listen.host, has_users=bool(smtp.users), has_allowlist=bool(smtp.allowed_senders)
    )
    if problem:
        raise SmtpSetupError(problem)
    context = tls_context(smtp)
    users = {name: secret.get_secret_value() for name, secret in smtp.users.items()}
    handler = SmtpHandler(
        await handler_config(settings),
        MailIntake(store, spool),
        MessageReader(smtp.reader_processes),
        authenticator=Authenticator(users) if users else None,
        login_limiter=AuthLimiter(
            first_delay=smtp.auth_failure_delay.total_seconds(),
            max_failures=smtp.auth_max_failures,
            window=smtp.auth_failure_window.total_seconds(),
        ),
        on_accept=on_accept,
    )
    hostname = smtp.hostname or _local_hostname()
    connections: set[FaxSMTP] = set()
    gate = ConnectionGate(smtp.max_connections, smtp.max_connections_per_client)
    if not log.isEnabledFor(logging.DEBUG):
        # aiosmtpd logs every command at INFO (and a deprecation warning per login).
        logging.getLogger("mail.log").setLevel(logging.ERROR)

    def connection() -> FaxSMTP:
        protocol = FaxSMTP(
            handler,
            max_line=smtp.max_message_size,
            gate=gate,
            on_lost=connections.discard,
            hostname=hostname,
            ident="faxgate",
            data_size_limit=smtp.max_message_size,
            tls_context=context,
            require_starttls=smtp.require_tls,
            auth_require_tls=True,
            timeout=smtp.idle_timeout.total_seconds(),
            command_call_limit={"AUTH": AUTH_TRIES, "*": _UNLIMITED},
        )
        connections.add(protocol)
        return protocol

    loop = asyncio.get_running_loop()
    server = await loop.create_server(connection, smtp.listen.host, smtp.listen.port)
    listener = SmtpListener(server, handler, connections)
    log.info("smtp listening host=%s port=%d hostname=%s", listener.host, listener.port, hostname)
    return listener


async def load_address_book(settings: Settings) -> AddressBook:
    """The contacts file, read away from the loop; SmtpSetupError when it cannot be read.
    Entries left out for a problem are logged, each once."""
    addressing = settings.addressing
    try:
        book = await asyncio.to_thread(
            read_address_book,
            addressing.contacts_file,
            settings.numbers.policy(),
            addressing.max_group_size,
        )
    except ContactsUnreadable as exc:
        raise SmtpSetupError(str(exc)) from None
    for problem in book.problems:
        log.warning("contacts file %s: %s", addressing.contacts_file, problem)
    return book


async def handler_config(settings: Settings, problem: str | None = None) -> HandlerConfig:
    """How mail is read and addressed under these settings, the contacts file read
    afresh; SmtpSetupError for `problem` (what the caller found in the way) or for a
    contacts file that cannot be read."""
    if problem:
        raise SmtpSetupError(problem)
    return HandlerConfig.of(settings, await load_address_book(settings))


def _local_hostname() -> str:
    # gethostname never asks DNS; getfqdn (aiosmtpd's default) may block for seconds.
    return socket.gethostname() or "faxgate"
