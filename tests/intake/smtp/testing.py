"""Helpers for the SMTP listener's tests: a raw SMTP client, messages, the reply Maildir."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import trustme

from faxgate.app import Daemon, started
from faxgate.domain.passwords import hash_password
from tests.conftest import pdf_document
from tests.daemon import fast_settings

FAX_DOMAIN = "fax.local"
SENDER = "alice@example.com"
PASSWORD = "correct horse battery staple"  # alice's, where the listener asks for a login
CHEAP = {"n": 2**10, "r": 8, "p": 1}  # a hash quick to check: these tests are not about cost


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # every line's text, joined by newlines

    @property
    def status(self) -> str:
        """The enhanced status code ("5.1.1"), or "" when the reply has none."""
        first = self.text.split(" ", 1)[0]
        return first if first.count(".") == 2 and first[0].isdigit() else ""

    @property
    def lines(self) -> list[str]:
        return self.text.split("\n")


class RawSmtp:
    """An SMTP client that shows every reply as it is: refusals are data, not errors."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting: Reply | None = None

    @classmethod
    async def connect(
        cls, port: int, host: str = "127.0.0.1", source: str | None = None
    ) -> RawSmtp:
        """Connect, from the address `source` when given (another client on loopback)."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, limit=2**20, local_addr=local)
        client = cls(reader, writer)
        client.greeting = await client.read_reply()
        return client

    async def read_reply(self) -> Reply:
        lines = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), 20)
            if not raw:
                raise ConnectionError("the server closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if len(line) < 4 or line[3] != "-":
                return Reply(int(line[:3]), "\n".join(lines))

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def ehlo(self, name: str = "client.example.com") -> Reply:
        return await self.command(f"EHLO {name}")

    async def data(self, message: bytes) -> Reply:
        """DATA and the message (dot-stuffed); the reply to the message."""
        start = await self.command("DATA")
        if start.code != 354:
            return start
        lines = message.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        body = b"".join(
            (b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines
        )
        self.writer.write(body + b".\r\n")
        await self.writer.drain()
        return await self.read_reply()

    async def send(self, sender: str, recipients: list[str], message: bytes) -> Reply:
        """One whole transaction after EHLO; the first refusal, else the reply to DATA."""
        reply = await self.command(f"MAIL FROM:<{sender}>")
        if reply.code != 250:
            return reply
        for recipient in recipients:
            reply = await self.command(f"RCPT TO:<{recipient}>")
            if reply.code != 250:
                return reply
        return await self.data(message)

    async def starttls(self, context: ssl.SSLContext) -> Reply:
        reply = await self.command("STARTTLS")
        if reply.code == 220:
            await self.writer.start_tls(context, server_hostname="localhost")
        return reply

    async def auth_plain(self, user: str, password: str) -> Reply:
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return await self.command(f"AUTH PLAIN {blob}")

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


@asynccontextmanager
async def smtp_client(port: int) -> AsyncIterator[RawSmtp]:
    client = await RawSmtp.connect(port)
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def smtp_daemon(
    state_dir: Path, sections: dict[str, dict[str, Any]] | None = None, **smtp: Any
) -> AsyncIterator[Daemon]:
    """A whole daemon on the sandbox, its SMTP listener on a free loopback port; `smtp`
    are SMTP settings, `sections` any others. Messages are read in a thread unless
    `reader_processes` says otherwise: a process pool per test would cost seconds."""
    smtp = {"listen": "127.0.0.1:0", "reader_processes": 0, **smtp}
    settings = fast_settings(state_dir, **(sections or {}), smtp=smtp)
    async with started(settings) as daemon:
        yield daemon


def smtp_port(daemon: Daemon) -> int:
    assert daemon.smtp is not None
    return daemon.smtp.port


def fax_mail(
    *numbers: str,
    sender: str = f"Alice Example <{SENDER}>",
    subject: str = "Contract",
    body: str | None = "Please sign and send back.\n",
    pages: int = 2,
    message_id: str = "<contract-1@example.com>",
    headers: dict[str, str] | None = None,
    attachment: tuple[str, bytes, str] | None = None,
) -> bytes:
    """A message as a mail client writes it: a body and a PDF, to NUMBER@fax.local."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(
        number if "@" in number else f"{number}@{FAX_DOMAIN}" for number in numbers
    )
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body or "")
    if attachment is None:
        attachment = ("contract.pdf", pdf_document(pages), "application/pdf")
    name, content, content_type = attachment
    maintype, subtype = content_type.split("/")
    message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=email.policy.SMTP)


async def mail_to(port: int, number: str, message: bytes) -> None:
    """`message` by SMTP to NUMBER@fax.local, from SENDER, at a listener on loopback; it
    must be accepted."""
    errors, _ = await aiosmtplib.send(
        message,
        sender=SENDER,
        recipients=[f"{number}@{FAX_DOMAIN}"],
        hostname="127.0.0.1",
        port=port,
        timeout=20,
    )
    assert errors == {}


def replies(daemon: Daemon) -> list[EmailMessage]:
    """The mail faxgate has written to its Maildir, oldest first."""
    folder = daemon.settings.maildir / "new"
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(parsed)
    return found


def subject(mail: EmailMessage) -> str:
    """The Subject as a mail program shows it (a folded header unfolded, trimmed)."""
    return " ".join(str(mail["Subject"]).split())


def spool_files(daemon: Daemon) -> set[str]:
    return {path.name for path in daemon.settings.spool_dir.iterdir()}


@dataclass(frozen=True)
class Tls:
    """A certificate for the listener, and a client context that trusts it."""

    cert: Path
    key: Path
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Tls(cert, key, client)


def alice_over_tls(tls: Tls) -> dict[str, Any]:
    """SMTP settings for a listener that offers STARTTLS with `tls` and logs in one user,
    alice, with PASSWORD."""
    return {
        "tls_cert": str(tls.cert),
        "tls_key": str(tls.key),
        "users": {"alice": hash_password(PASSWORD, **CHEAP)},
    }
