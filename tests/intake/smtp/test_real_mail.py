"""Real mail programs' forms through the real listener: the reply each gets, and the fax."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from faxgate.app import Daemon
from faxgate.domain.jobs import JobState
from tests.conftest import pdf_document
from tests.daemon import settled
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    SENDER,
    smtp_client,
    smtp_daemon,
    smtp_port,
)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with smtp_daemon(tmp_path / "state") as running:
        yield running


async def test_a_latin1_text_attachment_is_faxed_not_failed_at_the_provider(
    daemon: Daemon,
) -> None:
    text = "Lieferschein für Müller & Söhne, 12 °C\n".encode("latin-1")
    message = (
        f"From: {SENDER}\r\nTo: 14155550140@{FAX_DOMAIN}\r\nSubject: Lieferschein\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nAnbei.\r\n"
        '--b\r\nContent-Type: text/plain; charset="iso-8859-1"; name="lieferschein.txt"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        'Content-Disposition: attachment; filename="lieferschein.txt"\r\n\r\n'
        f"{base64.b64encode(text).decode()}\r\n--b--\r\n"
    ).encode()
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [f"14155550140@{FAX_DOMAIN}"], message)
    assert reply.code == 250, reply
    (job,) = daemon.store.recent_jobs(10)
    (document,) = daemon.store.documents(job.id)
    assert document.path.read_bytes() == "\ufeffLieferschein für Müller & Söhne, 12 °C\n".encode()
    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT, ended


async def test_reasons_come_one_a_line_with_file_names_whole(daemon: Daemon) -> None:
    pdf = pdf_document(1)
    raw = (
        f"From: {SENDER}\r\nTo: 14155550141@{FAX_DOMAIN}\r\nSubject: Photos\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nThe scans.\r\n"
        "--b\r\nContent-Type: application/zip; name*=UTF-8''%EC%82%AC%EC%A7%84.zip\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n"
        '--b\r\nContent-Type: application/pdf; name="cut.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
        f"{base64.b64encode(pdf[: len(pdf) // 2]).decode()}\r\n"
        "--b--\r\n"
    ).encode()
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [f"14155550141@{FAX_DOMAIN}"], raw)
        # The session goes on after a multiline refusal.
        assert (await client.command("NOOP")).code == 250
    assert reply.code == 554
    first, second = reply.lines
    assert first.startswith("5.6.0 =?UTF-8?B?")
    assert str(make_header(decode_header(first.split(" ")[1]))) == "사진.zip:"
    assert second == (
        "5.6.0 cut.pdf: the PDF is incomplete (it was cut off when saved or sent); "
        "send the whole file"
    )
    assert daemon.store.recent_jobs(10) == []


async def test_a_bare_lf_client_gets_its_leading_dots_back(daemon: Daemon) -> None:
    wire = (
        f"From: {SENDER}\nTo: 14155550142@{FAX_DOMAIN}\nSubject: Dots\n\n"
        "..htaccess must be faxed as written\nthe end\n"
    ).encode()
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        for line in (f"MAIL FROM:<{SENDER}>", f"RCPT TO:<14155550142@{FAX_DOMAIN}>", "DATA"):
            assert (await client.command(line)).code in (250, 354)
        client.writer.write(wire + b"\r\n.\r\n")
        await client.writer.drain()
        reply = await client.read_reply()
    assert reply.code == 250, reply
    (job,) = daemon.store.recent_jobs(10)
    (document,) = daemon.store.documents(job.id)
    assert document.path.read_text().startswith(".htaccess must be faxed as written\n")
