"""Durable accept: spooled and committed, or nothing at all; several messages per commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.message import MailDocument
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.queue import Abandoned, GroupCommitter, Ticket
from faxgate.intake.smtp.accept import Fax, MailIntake, MailToFax
from faxgate.store import NewJob, Store, StoreError
from faxgate.store.spool import Spool
from tests.conftest import pdf_document
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

RAW = b"From: alice@example.com\r\nSubject: x\r\n\r\nhello\r\n"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3") as opened:
        yield opened


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


def mail(*numbers: str, documents: list[MailDocument] | None = None) -> MailToFax:
    return MailToFax(
        raw=RAW,
        faxes=[
            Fax(parse_fax_number(n), recipient=f"{n}@fax.local", cover_to=f"To {n}")
            for n in numbers
        ],
        documents=documents or [MailDocument("a.pdf", pdf_document(1), "application/pdf")],
        cover_from="Alice",
        cover_message="hello",
        from_line="14155550199",
        reply_to="alice@example.com",
        intake_ref={"sender": "alice@example.com", "message_id": "<m@example.com>"},
    )


async def test_a_message_is_spooled_and_committed(store: Store, spool: Spool) -> None:
    intake = MailIntake(store, spool)
    jobs = await intake.accept(mail("+14155550101", "+14155550102"))
    assert [job.to_number for job in jobs] == ["+14155550101", "+14155550102"]
    assert all(job.state is JobState.QUEUED and job.intake is Intake.SMTP for job in jobs)
    assert [job.cover_to for job in jobs] == ["To +14155550101", "To +14155550102"]
    assert jobs[0].group_id is not None
    assert jobs[0].group_id == jobs[1].group_id
    assert jobs[0].from_line == "14155550199"
    eml = Path(jobs[0].intake_ref["eml"])
    assert await asyncio.to_thread(eml.read_bytes) == RAW
    assert eml.parent == spool.root
    assert jobs[1].intake_ref["recipient"] == "+14155550102@fax.local"
    # One set of documents for both numbers; the .eml beside them.
    (first,) = store.documents(jobs[0].id)
    (second,) = store.documents(jobs[1].id)
    assert first.path == second.path
    assert sorted(p.name for p in spool.files()) == sorted([eml.name, first.path.name])


async def test_a_refused_document_writes_nothing(store: Store, spool: Spool) -> None:
    not_a_pdf = [MailDocument("a.pdf", b"hello", "application/pdf")]
    with pytest.raises(DocumentRefused, match="does not look like a PDF"):
        await MailIntake(store, spool).accept(mail("+14155550101", documents=not_a_pdf))
    assert spool.files() == []
    assert store.recent_jobs(10) == []


async def test_a_failed_commit_leaves_no_file(
    store: Store, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_jobs: object) -> list[Job]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "create_jobs", broken)
    with pytest.raises(sqlite3.OperationalError):
        await MailIntake(store, spool).accept(mail("+14155550101"))
    assert spool.files() == []


async def test_a_failed_commit_on_postgresql_says_which_store(
    postgres_url: str,
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A database has no file: the message names its location, and the 451 stands."""
    with Store.open_url(postgres_url) as shared:

        def broken(_jobs: object) -> list[Job]:
            raise StoreError("the transaction failed and was rolled back")

        monkeypatch.setattr(shared, "create_jobs", broken)
        with pytest.raises(StoreError, match="rolled back"):
            await MailIntake(shared, spool).accept(mail("+14155550101"))
    assert spool.files() == []


def new_job(number: str, **ref: object) -> list[NewJob]:
    return [NewJob(to_number=number, intake=Intake.SMTP, intake_ref=ref)]


async def test_messages_arriving_together_share_one_transaction(store: Store) -> None:
    committer = GroupCommitter(store)
    results = await asyncio.gather(
        *(committer.commit(new_job(f"+1415555{n:04d}"), Ticket()) for n in range(300, 320))
    )
    assert [jobs[0].to_number for jobs in results] == [f"+1415555{n:04d}" for n in range(300, 320)]
    assert committer.transactions == 1
    # A message alone is not kept waiting for company.
    await committer.commit(new_job("+14155550399"), Ticket())
    assert committer.transactions == 2


async def test_batches_are_capped(store: Store) -> None:
    committer = GroupCommitter(store, max_batch=8)
    await asyncio.gather(
        *(committer.commit(new_job(f"+1415555{n:04d}"), Ticket()) for n in range(300, 320))
    )
    assert committer.transactions == 3


async def test_one_bad_message_does_not_sink_the_batch(store: Store) -> None:
    committer = GroupCommitter(store)
    poison = new_job("+14155550300", unserialisable=object())
    outcomes = await asyncio.gather(
        committer.commit(new_job("+14155550301"), Ticket()),
        committer.commit(poison, Ticket()),
        committer.commit(new_job("+14155550302"), Ticket()),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], TypeError)
    good = [result for result in outcomes if isinstance(result, list)]
    assert [jobs[0].to_number for jobs in good] == ["+14155550301", "+14155550302"]
    assert sorted(job.to_number for job in store.recent_jobs(10)) == [
        "+14155550301",
        "+14155550302",
    ]


async def test_a_message_given_up_before_its_commit_is_dropped(store: Store, spool: Spool) -> None:
    ticket = Ticket()
    ticket.abandon()
    with pytest.raises(Abandoned):
        await MailIntake(store, spool).accept(mail("+14155550101"), ticket)
    assert store.recent_jobs(10) == []
    assert spool.files() == []

    committer = GroupCommitter(store)
    late = Ticket()
    waiting = asyncio.gather(
        committer.commit(new_job("+14155550102"), Ticket()),
        committer.commit(new_job("+14155550103"), late),
        return_exceptions=True,
    )
    late.abandon()  # before the flush has run
    kept, dropped = await waiting
    assert isinstance(kept, list)
    assert isinstance(dropped, Abandoned)
    assert [job.to_number for job in store.recent_jobs(10)] == ["+14155550102"]


async def test_idle_waits_for_the_commit_in_flight(store: Store) -> None:
    committer = GroupCommitter(store)
    pending = asyncio.ensure_future(committer.commit(new_job("+14155550104"), Ticket()))
    await asyncio.sleep(0)
    await committer.idle()
    assert pending.done()
    assert store.recent_jobs(10)[0].to_number == "+14155550104"
