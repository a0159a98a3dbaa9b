"""Two `faxgate run` processes on one PostgreSQL store, each with a state directory (and
spool) of its own, as on two hosts: what one took in, the other sends and delivers.

Instance A takes a fax by mail and receives an inbound fax, but can finish neither: the
provider's limit it is given is full, and its mail relay takes connections and never
answers (a host cut off). A is
SIGKILLed and its spool removed, as another host's would be out of reach. Instance B
then takes A's work over once A's leases run out, and reads both documents from the
database: the sandbox gets the fax's own bytes, B's mail carries the inbound PDF.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from faxgate.domain.jobs import Intake, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.hellofax.sandbox.inject import inject_inbound
from faxgate.store import NewJob, Store
from tests.conftest import SANDBOX_LINE, pdf_document, wait_for
from tests.daemon import DaemonProcess, keeping_sandbox, on_shared_store, sandbox_posts_to
from tests.intake.smtp.testing import fax_mail, mail_to
from tests.postgres import postgres_server, postgres_url, rows

__all__ = ["postgres_server", "postgres_url"]

PortFactory = Callable[[], int]
LEASE = "2s"
TO = "14155553101"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with keeping_sandbox(tmp_path) as running:
        yield running


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never answers: a provider or relay out of reach."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def mails(state_dir: Path) -> list[EmailMessage]:
    folder = state_dir / "maildir" / "new"
    found = sorted(folder.glob("*")) if folder.is_dir() else []
    parsed = [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default) for path in found
    ]
    return [message for message in parsed if isinstance(message, EmailMessage)]


async def test_what_one_instance_took_in_another_sends_and_delivers(
    tmp_path: Path,
    sandbox: Sandbox,
    postgres_url: str,
    silent_port: int,
    unused_tcp_port_factory: PortFactory,
) -> None:
    http_a, http_b, smtp_a = (unused_tcp_port_factory() for _ in range(3))
    shared = on_shared_store(
        postgres_url, LEASE, FAXGATE_INBOUND__DEFAULT_EMAIL='["desk@example.org"]'
    )
    a = DaemonProcess(
        tmp_path / "a" / "state",
        sandbox,
        http_a,
        {
            **shared,
            "FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp_a}",
            "FAXGATE_PROVIDER__BASE_URL": f"http://127.0.0.1:{silent_port}",
            "FAXGATE_MAIL__RELAY": f"127.0.0.1:{silent_port}",
            "FAXGATE_DISPATCH__MAX_IN_FLIGHT": "1",
        },
    )
    b = DaemonProcess(tmp_path / "b" / "state", sandbox, http_b, shared)
    for instance in (a, b):
        instance.state_dir.parent.mkdir(parents=True)
    await sandbox_posts_to(sandbox, http_a, "inbound")
    # One fax at the provider already, and A may have one in flight: A sends nothing.
    with Store.open_url(postgres_url) as store:
        [held] = store.create_jobs([NewJob(to_number="+14155553999", intake=Intake.CLI)])
        store.transition(held.id, JobState.SUBMITTING, detail="sending")
        store.transition(
            held.id,
            JobState.SUBMITTED,
            detail="taken",
            provider_guid="g" * 40,
            next_poll_at=datetime.now(UTC) + timedelta(days=1),
        )
    try:
        await a.start()
        assert a.process is not None
        owner_a = f"{socket.gethostname()}:{a.process.pid}:%"

        # A takes a fax by mail (250), but may not send it yet.
        await mail_to(smtp_a, TO, fax_mail(TO, pages=2, message_id="<doc-1@example.com>"))
        [(job_id, sha256)] = await asyncio.to_thread(
            rows, postgres_url, "SELECT job_id, sha256 FROM documents"
        )

        # A receives an inbound fax and starts mailing it: its relay never answers.
        inbound_pdf = pdf_document(1)
        document = tmp_path / "inbound.pdf"
        document.write_bytes(inbound_pdf)
        await inject_inbound(sandbox.base_url, SANDBOX_LINE, "14155550199", document)

        async def a_delivering() -> bool:
            found = await asyncio.to_thread(
                rows,
                postgres_url,
                "SELECT count(*) FROM outbox WHERE kind = 'inbound' AND lease_owner LIKE %s",
                owner_a,
            )
            return bool(found[0][0])

        await wait_for(a_delivering, timeout=20, what="A delivering the inbound fax")
        [(received_sha256,)] = await asyncio.to_thread(
            rows, postgres_url, "SELECT document_sha256 FROM inbound_faxes"
        )

        # A dies; its spool is out of reach, as another host's would be.
        await a.kill()
        shutil.rmtree(a.state_dir / "spool")

        await b.start()

        async def b_finished() -> bool:
            [(state,)] = await asyncio.to_thread(
                rows, postgres_url, "SELECT state FROM jobs WHERE id = %s", job_id
            )
            [(owed,)] = await asyncio.to_thread(
                rows, postgres_url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
            )
            return bool(state == "sent" and owed == 0)

        # B starts, takes A's leases once they run out and reads the documents from the
        # database: under a loaded full suite that took over 30 s once.
        await wait_for(b_finished, timeout=90, what="B sending the fax and delivering the mail")

        # The provider got the fax's own document, once, from B.
        sent = [t for t in sandbox.inspect() if not t.is_inbound]
        assert [t.to for t in sent] == [TO]
        assert [f.sha256 for f in sent[0].files] == [sha256]
        assert "submitting job=" in b.log.read_text()
        # B's mail carries the inbound fax's PDF, written into B's spool from the database.
        inbound_mails = [m for m in mails(b.state_dir) if m["To"] == "desk@example.org"]
        assert len(inbound_mails) == 1
        attached = [
            part.get_content()
            for part in inbound_mails[0].iter_attachments()
            if part.get_content_type() == "application/pdf"
        ]
        assert [hashlib.sha256(pdf).hexdigest() for pdf in attached] == [received_sha256]
        copied = sorted(p.name for p in (b.state_dir / "spool").glob("db-*"))
        assert len(copied) == 2, copied
        assert {f"db-{sha256}.pdf", f"db-{received_sha256}.pdf"} == set(copied)
        assert b.log.read_text().count("document copied from the store") == 2
    finally:
        if b.process is not None:
            assert await b.stop() == 0
        if a.process is not None and a.process.returncode is None:
            await a.kill()
