"""The listener against swaks, the SMTP test tool people reach for (Debian package swaks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from faxgate.app import Daemon
from faxgate.domain.jobs import JobState
from faxgate.domain.passwords import hash_password
from tests import peers
from tests.conftest import pdf_document
from tests.daemon import reports_delivered, settled
from tests.intake.smtp.testing import FAX_DOMAIN, SENDER, replies, smtp_daemon, smtp_port


async def run_swaks(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        peers.command("swaks"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    async with smtp_daemon(
        tmp_path / "state",
        tls_cert=str(cert),
        tls_key=str(key),
        users={"scanner": hash_password("scan-pass", n=2**10)},
        allowed_senders=["@example.com"],
    ) as running:
        yield running


async def test_swaks_sends_a_pdf(daemon: Daemon, tmp_path: Path) -> None:
    document = tmp_path / "letter.pdf"
    document.write_bytes(pdf_document(1))
    code, output = await run_swaks(
        "--server",
        f"127.0.0.1:{smtp_port(daemon)}",
        "--from",
        SENDER,
        "--to",
        f"1-415-555-0400@{FAX_DOMAIN}",  # swaks would read "+1-..." as an option
        "--header",
        "Subject: Letter",
        "--body",
        "Here is the letter.",
        "--attach-type",
        "application/pdf",
        "--attach-name",
        "letter.pdf",
        "--attach",
        f"@{document}",
    )
    assert code == 0, output
    assert "250 2.0.0 OK: queued as" in output
    (job,) = daemon.store.recent_jobs(10)
    assert job.to_number == "+14155550400"
    assert [d.name for d in daemon.store.documents(job.id)] == ["letter.pdf"]
    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT
    await reports_delivered(daemon, [job])
    assert [str(mail["To"]) for mail in replies(daemon)] == [SENDER]


async def test_swaks_with_starttls_and_auth(daemon: Daemon) -> None:
    for module in ("Net::SSLeay", "IO::Socket::SSL", "Authen::SASL"):
        peers.perl_module(module)  # swaks runs without them, but refuses --tls and --auth
    common = ["--server", f"127.0.0.1:{smtp_port(daemon)}", "--to", f"14155550401@{FAX_DOMAIN}"]
    code, output = await run_swaks(
        *common, "--from", "someone@elsewhere.example", "--tls", "--auth", "PLAIN",
        "--auth-user", "scanner", "--auth-password", "scan-pass",
    )  # fmt: skip
    assert code == 0, output
    assert "235 2.7.0 Authentication successful" in output
    (job,) = daemon.store.recent_jobs(10)
    assert job.intake_ref["login"] == "scanner"

    # Without TLS no AUTH is offered; swaks gives up before sending anything.
    code, output = await run_swaks(
        *common, "--from", "someone@elsewhere.example", "--auth", "LOGIN",
        "--auth-user", "scanner", "--auth-password", "scan-pass",
    )  # fmt: skip
    assert code != 0
    assert len(daemon.store.recent_jobs(10)) == 1


async def test_swaks_sees_the_refusals(daemon: Daemon) -> None:
    server = ["--server", f"127.0.0.1:{smtp_port(daemon)}"]
    code, output = await run_swaks(*server, "--from", SENDER, "--to", "victim@example.net")
    assert code != 0
    assert "550 5.1.1" in output
    code, output = await run_swaks(
        *server, "--from", "mallory@evil.example", "--to", f"14155550402@{FAX_DOMAIN}"
    )
    assert code != 0
    assert "530 5.7.0 authentication required" in output
    assert daemon.store.recent_jobs(10) == []
