"""The mailer: a real Maildir under tmp_path, a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import asyncio
import base64
import logging
import mailbox
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from faxgate.notify.mailer import (
    AUTO_GENERATED,
    AUTO_REPLIED,
    MaildirMailer,
    MailError,
    RelayMailer,
    mailer_from_settings,
    parse_relay,
)
from faxgate.settings import MailSettings

NOW = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)
FROM = "Faxgate <fax@gateway.example>"
USERNAME = "relay-user"
PASSWORD = "s3cret-Pa55word"


def report(to: str = "alice@example.com", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = "Fax to +1 415-555-0100 sent (3 pages)"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content("Your fax was sent.\n")
    return message


# ---------------------------------------------------------------------------- Maildir


async def test_maildir_write_lands_in_new_with_the_headers(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    mailer = MaildirMailer(maildir, from_address=FROM, clock=lambda: NOW)

    await mailer.send(report())

    assert list((maildir / "tmp").iterdir()) == []
    assert (maildir / "cur").is_dir()
    files = list((maildir / "new").iterdir())
    assert len(files) == 1
    written = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert written["From"] == FROM
    assert written["To"] == "alice@example.com"
    assert written["Date"] == "Wed, 01 May 2024 10:15:00 +0000"
    assert written["Message-ID"].endswith("@gateway.example>")
    assert written["Auto-Submitted"] == AUTO_GENERATED
    body = written.get_body()
    assert body is not None
    assert body.get_content() == "Your fax was sent.\n"
    # A reader of the mailbox sees it too.
    assert [m["Subject"] for m in mailbox.Maildir(maildir, create=False)] == [
        "Fax to +1 415-555-0100 sent (3 pages)"
    ]


async def test_maildir_keeps_the_callers_auto_submitted_and_message_id(tmp_path: Path) -> None:
    mailer = MaildirMailer(tmp_path / "maildir", from_address=FROM)
    message = report(Auto_Submitted=AUTO_REPLIED, Message_ID="<fixed@example.com>")
    message["From"] = "someone-else@example.com"

    await mailer.send(message)
    await mailer.send(report())

    files = sorted((tmp_path / "maildir" / "new").iterdir())
    assert len(files) == 2  # two messages, two names
    written = [message_from_bytes(f.read_bytes(), policy=policy.default) for f in files]
    replied = next(m for m in written if m["Auto-Submitted"] == AUTO_REPLIED)
    assert replied["Message-ID"] == "<fixed@example.com>"
    assert replied["From"] == FROM  # always the configured address
    assert len(replied.get_all("From", [])) == 1


async def test_a_write_cut_short_does_not_block_the_message(tmp_path: Path) -> None:
    maildir = tmp_path / "maildir"
    mailer = MaildirMailer(maildir, from_address=FROM)
    await mailer.send(report(Message_ID="<other@example.com>"))  # makes the folders
    # A write killed before its rename left a file in tmp/ under the message's name.
    cut_short = maildir / "tmp" / MaildirMailer._name_for("<again@example.com>")
    cut_short.write_bytes(b"half a mess")

    await mailer.send(report(Message_ID="<again@example.com>"))  # the delivery tried again
    await mailer.send(report(Message_ID="<again@example.com>"))  # and once more: kept once

    names = sorted(path.name for path in (maildir / "new").iterdir())
    assert len(names) == 2
    assert cut_short.name in names


async def test_maildir_that_cannot_be_written_is_a_temporary_error(tmp_path: Path) -> None:
    blocker = tmp_path / "maildir"
    blocker.write_text("a file where the folder should be")
    mailer = MaildirMailer(blocker)

    with pytest.raises(MailError) as caught:
        await mailer.send(report())

    assert not caught.value.permanent


# ---------------------------------------------------------------------------- a test relay


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RelayHandler:
    """Accepts every message, except recipients and data it is told to refuse."""

    delivered: list[Delivered] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    data_answer: str | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer is not None:
            return self.data_answer
        content = envelope.original_content or b""
        self.delivered.append(
            Delivered(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                content=content,
                authenticated=bool(session.authenticated),
                tls=session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


def check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USERNAME.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # a failure answers 535


@asynccontextmanager
async def relay(handler: RelayHandler, **options: Any) -> AsyncIterator[int]:
    """An aiosmtpd server on loopback, inside the running loop; yields its port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="localhost", **options), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def relay_mailer(port: int, **options: Any) -> RelayMailer:
    return RelayMailer(
        "127.0.0.1",
        port,
        from_address=FROM,
        local_hostname="localhost",  # no DNS lookup for our own name
        timeout=10,
        clock=lambda: NOW,
        **options,
    )


@pytest.fixture(scope="module")
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: a certificate for 127.0.0.1 from a CA made for the test."""
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


# ---------------------------------------------------------------------------- relay


async def test_relay_delivers_without_login() -> None:
    handler = RelayHandler()
    async with relay(handler) as port:
        await relay_mailer(port).send(report())

    [delivered] = handler.delivered
    assert delivered.mail_from == "fax@gateway.example"
    assert delivered.rcpt_tos == ["alice@example.com"]
    assert not delivered.authenticated
    assert not delivered.tls
    message = delivered.message
    assert message["From"] == FROM
    assert message["Date"] == "Wed, 01 May 2024 10:15:00 +0000"
    assert message["Message-ID"].endswith("@gateway.example>")
    assert message["Auto-Submitted"] == AUTO_GENERATED


async def test_relay_logs_in_when_a_username_is_set() -> None:
    handler = RelayHandler()
    async with relay(handler, authenticator=check_login, auth_require_tls=False) as port:
        await relay_mailer(port, username=USERNAME, password=PASSWORD).send(report())

    [delivered] = handler.delivered
    assert delivered.authenticated


async def test_relay_with_starttls_and_login(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_tls, client_tls = tls_contexts
    handler = RelayHandler()
    # aiosmtpd's defaults: AUTH only over TLS; here STARTTLS is required too.
    options = {"tls_context": server_tls, "require_starttls": True, "authenticator": check_login}
    async with relay(handler, **options) as port:
        mailer = relay_mailer(
            port,
            starttls=True,
            username=USERNAME,
            password=SecretStr(PASSWORD),
            tls_context=client_tls,
        )
        await mailer.send(report())

    [delivered] = handler.delivered
    assert delivered.tls
    assert delivered.authenticated


async def test_relay_that_requires_starttls_not_asked_for_is_temporary(
    tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_tls, _ = tls_contexts
    handler = RelayHandler()
    async with relay(handler, tls_context=server_tls, require_starttls=True) as port:
        with pytest.raises(MailError) as caught:
            await relay_mailer(port).send(report())

    assert not caught.value.permanent  # the settings are wrong, not the message
    assert handler.delivered == []


async def test_refused_recipient_is_permanent() -> None:
    handler = RelayHandler(refuse_rcpt={"nobody@example.com": "550 5.1.1 No such user"})
    async with relay(handler) as port:
        with pytest.raises(MailError) as caught:
            await relay_mailer(port).send(report(to="nobody@example.com"))

    assert caught.value.permanent
    assert "550" in str(caught.value)
    assert "No such user" in str(caught.value)


async def test_refused_data_is_permanent() -> None:
    handler = RelayHandler(data_answer="554 5.6.0 Message refused")
    async with relay(handler) as port:
        with pytest.raises(MailError) as caught:
            await relay_mailer(port).send(report())

    assert caught.value.permanent


async def test_4xx_answer_is_temporary() -> None:
    handler = RelayHandler(data_answer="451 4.3.0 Try again later")
    async with relay(handler) as port:
        with pytest.raises(MailError) as caught:
            await relay_mailer(port).send(report())

    assert not caught.value.permanent
    assert "451" in str(caught.value)


async def test_connection_refused_is_temporary() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(MailError) as caught:
        await relay_mailer(port).send(report())

    assert not caught.value.permanent


async def test_password_is_in_no_log_record_nor_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = {PASSWORD, base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()}
    handler = RelayHandler()
    async with relay(handler, authenticator=check_login, auth_require_tls=False) as port:
        await relay_mailer(port, username=USERNAME, password=PASSWORD).send(report())
        wrong = relay_mailer(port, username=USERNAME, password=PASSWORD + "-wrong")
        with pytest.raises(MailError) as caught:
            await wrong.send(report())

    assert len(handler.delivered) == 1
    assert not caught.value.permanent  # a refused login is the settings' fault
    assert "535" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(wrong)
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]  # aiosmtpd's own
    assert any(r.name == "faxgate.mailer" for r in ours)
    for record in ours:
        text = record.getMessage() + (record.exc_text or "")
        assert not any(secret in text for secret in secrets), record.name


# ---------------------------------------------------------------------------- settings


def test_no_relay_means_the_maildir(tmp_path: Path) -> None:
    mailer = mailer_from_settings(MailSettings(), tmp_path / "maildir")

    assert isinstance(mailer, MaildirMailer)
    assert mailer.path == tmp_path / "maildir"


def test_relay_from_settings(tmp_path: Path) -> None:
    settings = MailSettings(
        relay="smtp.example.com:587",
        starttls=True,
        username="fax",
        password=SecretStr(PASSWORD),
    )

    mailer = mailer_from_settings(settings, tmp_path / "maildir")

    assert isinstance(mailer, RelayMailer)
    assert (mailer.host, mailer.port, mailer.starttls, mailer.username) == (
        "smtp.example.com",
        587,
        True,
        "fax",
    )
    assert PASSWORD not in repr(mailer)


def test_relay_addresses() -> None:
    assert parse_relay("smtp.example.com:25") == ("smtp.example.com", 25)
    assert parse_relay("[::1]:2525") == ("::1", 2525)
