"""Outgoing mail: through an SMTP relay, or into a local Maildir when none is set.

Every message leaves with the headers a well-behaved automatic sender owes: From (the
configured address), Date, Message-ID and Auto-Submitted (RFC 3834). The caller says
whether a message answers someone (`auto-replied`); anything else is `auto-generated`.

Failures raise MailError. `permanent` tells the notifier whether trying again can help: a
5xx refusal of the message itself (its sender, recipients or content) is permanent;
everything else is temporary, including a refused greeting, STARTTLS or login, which is the
relay's setup rather than the message's and mends when a person fixes the settings (and
so is "530 authentication required", though it answers MAIL FROM).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import hashlib
import logging
import mailbox
import secrets
import socket
import ssl
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Final, Protocol

import aiosmtplib
from pydantic import SecretStr

from faxgate.clock import utc_now
from faxgate.domain.autoreply import AUTO_GENERATED as AUTO_GENERATED
from faxgate.domain.autoreply import AUTO_REPLIED as AUTO_REPLIED
from faxgate.durable import write_bytes
from faxgate.settings import MailSettings

log = logging.getLogger("faxgate.mailer")

DEFAULT_FROM: Final = "faxgate@localhost"
DEFAULT_RELAY_TIMEOUT: Final = 30.0  # seconds, for each step of the SMTP dialogue
# "530 Authentication required" (RFC 4954) comes at MAIL FROM but is the relay's setup.
_AUTH_REQUIRED: Final = 530


class MailError(Exception):
    """A message could not be handed on; `permanent` when trying again cannot help."""

    def __init__(self, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message on, or raise MailError. Missing headers are filled in place."""


# ---------------------------------------------------------------------------- headers


# Names the message being sent for good: the notifier sets it to the outbox row it
# delivers, so a delivery repeated after a crash carries the same Message-ID.
_message_key: ContextVar[str | None] = ContextVar("faxgate_message_key", default=None)


@contextlib.contextmanager
def keyed(key: str) -> Iterator[None]:
    """Messages sent inside get a Message-ID made from `key` rather than a random one."""
    token = _message_key.set(key)
    try:
        yield
    finally:
        _message_key.reset(token)


def address_domain(address: str) -> str:
    """The domain part of an address ("Fax <fax@example.com>" -> "example.com")."""
    _, addr = parseaddr(address)
    domain = addr.rpartition("@")[2] if "@" in addr else ""
    return domain or "localhost"


def stamp(message: EmailMessage, *, from_address: str, now: datetime) -> None:
    """Give the message the headers every outgoing message carries.

    From is always the configured address (relays refuse others); Date, Message-ID and
    Auto-Submitted are kept when the caller set them. The Message-ID's domain comes from
    the From address: make_msgid would otherwise ask DNS for this host's name.
    """
    del message["From"]
    message["From"] = from_address
    if message["Date"] is None:
        message["Date"] = format_datetime(now)
    if message["Message-ID"] is None:
        key = _message_key.get()
        domain = address_domain(from_address)
        message["Message-ID"] = f"<faxgate.{key}@{domain}>" if key else make_msgid(domain=domain)
    if message["Auto-Submitted"] is None:
        message["Auto-Submitted"] = AUTO_GENERATED


def _recipients(message: EmailMessage) -> str:
    return ", ".join(str(value) for name in ("To", "Cc") for value in message.get_all(name, []))


# ---------------------------------------------------------------------------- Maildir


class MaildirMailer:
    """Writes each message into a Maildir (tmp/, then renamed into new/), durably.

    The file is fsynced before the rename and the new/ directory after it, so a message
    this mailer reported written survives a power cut, and a reader never sees half of one.
    The file is named after the Message-ID: a message written again (a delivery repeated
    after a crash) finds its copy in new/ or cur/ and is not written twice.
    """

    def __init__(
        self,
        path: Path,
        *,
        from_address: str = DEFAULT_FROM,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.path = Path(path)
        self._from_address = from_address
        self._clock = clock

    async def send(self, message: EmailMessage) -> None:
        stamp(message, from_address=self._from_address, now=self._clock())
        data = message.as_bytes(policy=email.policy.default)
        try:
            written = await asyncio.to_thread(self._write, data, str(message["Message-ID"]))
        except OSError as exc:
            # A full disk or a wrong permission: a person can fix it, so try again later.
            raise MailError(f"cannot write to maildir {self.path}: {exc}", permanent=False) from exc
        log.info(
            "mail written to=%s message_id=%s file=%s",
            _recipients(message),
            message["Message-ID"],
            written,
        )

    def _write(self, data: bytes, message_id: str) -> Path:
        self._ensure_dirs()
        name = self._name_for(message_id)
        # Its own name in tmp/: a write a crash cut short may have left the same one there.
        tmp = self.path / "tmp" / f"{name}.{secrets.token_hex(4)}"
        new = self.path / "new" / name
        already = self._written(name)
        if already is not None:
            log.info("mail already in the maildir message_id=%s file=%s", message_id, already)
            return already
        write_bytes(new, data, mode=0o600, temp=tmp)
        return new

    def _ensure_dirs(self) -> None:
        # mailbox.Maildir makes the folder and its three parts when the folder is new;
        # the mkdirs mend a folder someone emptied by hand.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.path, create=True)
        for part in ("tmp", "new", "cur"):
            (self.path / part).mkdir(mode=0o700, exist_ok=True)

    @staticmethod
    def _name_for(message_id: str) -> str:
        # Unique on this host (the Maildir rule) because Message-IDs are unique; the same
        # for the same message.
        digest = hashlib.sha256(message_id.encode()).hexdigest()[:32]
        host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")
        return f"faxgate-{digest}.{host}"

    def _written(self, name: str) -> Path | None:
        """The message's file if it is already there: in new/, or read (cur/, with flags)."""
        new = self.path / "new" / name
        if new.exists():
            return new
        return next(iter((self.path / "cur").glob(f"{name}*")), None)


# ---------------------------------------------------------------------------- relay


class RelayMailer:
    """Sends each message through an SMTP relay, on a connection of its own.

    STARTTLS only when asked (an internal relay without TLS stays usable); login only when
    a username is set. The password is kept as a SecretStr and never logged.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = False,
        username: str | None = None,
        password: SecretStr | str | None = None,
        timeout: float = DEFAULT_RELAY_TIMEOUT,
        from_address: str = DEFAULT_FROM,
        local_hostname: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.host = host
        self.port = port
        self.starttls = starttls
        self.username = username or None
        self._password = password if isinstance(password, SecretStr) else SecretStr(password or "")
        self.timeout = timeout
        self._from_address = from_address
        self._local_hostname = local_hostname
        self._tls_context = tls_context
        self._clock = clock

    def __repr__(self) -> str:
        return f"RelayMailer({self.host}:{self.port}, starttls={self.starttls})"

    async def send(self, message: EmailMessage) -> None:
        stamp(message, from_address=self._from_address, now=self._clock())
        sender = parseaddr(self._from_address)[1] or self._from_address
        relay = f"{self.host}:{self.port}"
        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            start_tls=self.starttls,
            local_hostname=self._local_hostname,
            tls_context=self._tls_context,
        )
        in_transaction = False
        try:
            async with smtp:
                if self.username is not None:
                    await smtp.login(self.username, self._password.get_secret_value())
                in_transaction = True
                refused, _ = await smtp.send_message(message, sender=sender)
        except ValueError as exc:
            # aiosmtplib found no recipient (or no sender) in the message: it never will.
            raise MailError(f"message cannot be sent: {exc}", permanent=True) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise _relay_error(exc, relay, in_transaction) from exc
        log.info(
            "mail sent to=%s message_id=%s relay=%s",
            _recipients(message),
            message["Message-ID"],
            relay,
        )
        for recipient, answer in refused.items():
            # Others took it: sending again would repeat it to them.
            log.warning(
                "mail refused for one recipient to=%s message_id=%s answer=%s",
                recipient,
                message["Message-ID"],
                f"{answer.code} {answer.message}",
            )


def _relay_error(exc: BaseException, relay: str, in_transaction: bool) -> MailError:
    """Classify what went wrong talking to the relay; see the module's docstring."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        answers = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        permanent = bool(exc.recipients) and all(r.code >= 500 for r in exc.recipients)
        return MailError(f"relay {relay} refused every recipient: {answers}", permanent)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        answer = f"{exc.code} {exc.message}"
        if not in_transaction or exc.code == _AUTH_REQUIRED:
            return MailError(f"relay {relay} refused the session: {answer}", permanent=False)
        permanent = 500 <= exc.code < 600
        return MailError(f"relay {relay} refused the message: {answer}", permanent)
    if isinstance(exc, aiosmtplib.SMTPException):
        return MailError(f"relay {relay}: {exc.message}", permanent=False)
    return MailError(f"relay {relay} unreachable: {exc or type(exc).__name__}", permanent=False)


# ---------------------------------------------------------------------------- settings


def parse_relay(relay: str) -> tuple[str, int]:
    """ "host:port" or "[v6]:port" (MailSettings has checked the shape)."""
    host, _, port = relay.strip().rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def mailer_from_settings(mail: MailSettings, maildir: Path) -> Mailer:
    """The relay when one is set; else the Maildir, so a trial shows every mail."""
    if not mail.relay:
        return MaildirMailer(maildir, from_address=mail.from_address)
    host, port = parse_relay(mail.relay)
    return RelayMailer(
        host,
        port,
        starttls=mail.starttls,
        username=mail.username or None,
        password=mail.password,
        from_address=mail.from_address,
    )
