"""The IMAP intake on a PostgreSQL store: its ledger there, one instance taking a burst,
and two instances watching the same mailbox, each message taken exactly once."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faxgate.intake.imap.taking import Ledger, MessageTaker, Outcome, Place, Prepared, Taken
from faxgate.intake.imap.watcher import BATCH, ImapIntake
from faxgate.intake.smtp.handler import HandlerConfig
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import wait_for
from tests.intake.imap.conftest import imap_daemon, imap_settings
from tests.intake.imap.dovecot import Dovecot
from tests.intake.smtp.testing import SENDER, fax_mail, replies
from tests.postgres import postgres_server, postgres_url, rows

__all__ = ["postgres_server", "postgres_url"]

PROCESSED = "faxgate.processed"  # Dovecot's maildir hierarchy delimiter is "."
REFUSED = "faxgate.refused"


def settings(state_dir: Path, server: Dovecot, url: str) -> Settings:
    return Settings(
        state_dir=state_dir,
        store={"url": url},
        imap=imap_settings(server),
        smtp={"allowed_senders": [SENDER]},
    )


def intake(config: Settings, store: Store) -> ImapIntake:
    taker = MessageTaker(HandlerConfig.of(config), store, Spool(config.spool_dir), max_size=10**7)
    return ImapIntake(config, taker)


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    """Two instances' stores on one database."""
    with Store.open_url(postgres_url) as first, Store.open_url(postgres_url) as second:
        yield first, second


def messages(faxes: int, refusals: int) -> tuple[list[bytes], list[str], list[str]]:
    """Messages to fax and to refuse (each with a reply owed), and their Message-IDs."""
    faxed = [f"<fax-{n}@example.com>" for n in range(faxes)]
    refused = [f"<lunch-{n}@example.com>" for n in range(refusals)]
    raw = [fax_mail("14155550101", message_id=found) for found in faxed] + [
        fax_mail("bob@company.example", subject="Lunch?", message_id=found) for found in refused
    ]
    return raw, faxed, refused


async def settled(server: Dovecot, processed: int, refused: int) -> bool:
    counts = await asyncio.to_thread(
        lambda: (server.count("INBOX"), server.count(PROCESSED), server.count(REFUSED))
    )
    return counts == (0, processed, refused)


def test_the_ledger_on_postgresql(tmp_path: Path, stores: tuple[Store, Store]) -> None:
    """What one instance took, another reads: outcomes by UID and by Message-ID."""
    first, second = stores
    config = Settings(state_dir=tmp_path / "state", smtp={"allowed_senders": [SENDER]})
    taker = MessageTaker(HandlerConfig.of(config), first, Spool(config.spool_dir), max_size=10**7)
    batch = [
        taker.decide(Place("INBOX", 9, 1), fax_mail("14155550101", message_id="<a@example.com>")),
        taker.decide(Place("INBOX", 9, 2), fax_mail("bob@company.example", message_id="<b@x>")),
    ]
    done = taker.commit([taker.spool_files(prepared) for prepared in batch])
    assert [taken.outcome for taken in done] == [Outcome.PROCESSED, Outcome.REFUSED]
    ledger = Ledger(second)
    assert ledger.outcomes("INBOX", 9, [1, 2, 3]) == {
        1: (Outcome.PROCESSED, "<a@example.com>"),
        2: (Outcome.REFUSED, "<b@x>"),
    }
    assert ledger.outcomes("INBOX", 10, [1, 2]) == {}
    assert ledger.by_message_id("INBOX", "<b@x>") is Outcome.REFUSED
    assert ledger.by_message_id("INBOX", "<c@x>") is None
    assert ledger.by_message_id("Other", "<a@example.com>") is None


async def test_one_instance_takes_a_burst_exactly_once(
    tmp_path: Path, dovecot: Dovecot, postgres_url: str, stores: tuple[Store, Store]
) -> None:
    raw, faxed, refused = messages(BATCH + 7, 3)
    dovecot.append_many(raw)
    config = settings(tmp_path / "state", dovecot, postgres_url)
    running = intake(config, stores[0])
    running.start()
    try:
        await wait_for(
            lambda: settled(dovecot, len(faxed), len(refused)), timeout=60, what="every move"
        )
    finally:
        await running.stop()
    jobs = stores[1].recent_jobs(500)
    assert sorted(job.intake_ref["message_id"] for job in jobs) == sorted(faxed)
    assert rows(postgres_url, "SELECT count(*) FROM imap_taken") == [(len(raw),)]
    assert rows(postgres_url, "SELECT count(*) FROM outbox WHERE kind = 'imap_refusal'") == [
        (len(refused),)
    ]
    assert running.lost == 0


@pytest.mark.parametrize("capability", ["", "IMAP4rev1 LITERAL+"], ids=["move", "copy"])
async def test_two_instances_on_one_mailbox_take_each_message_once(
    tmp_path: Path,
    postgres_url: str,
    stores: tuple[Store, Store],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capability: str,
) -> None:
    """Both list and read the same messages; their first batches are committed at the
    same moment, so one loses them: it keeps nothing (no job, no reply, no file) and moves
    them as taken or finds them moved. Each message ends once in its folder, its jobs or
    its reply once in the store. `copy`: a server without MOVE (COPY, then EXPUNGE)."""
    server = Dovecot(tmp_path / "dovecot", capability=capability)
    server.start()
    try:
        raw, faxed, refused = messages(2 * BATCH + 4, 6)
        server.append_many(raw)
        configs = [settings(tmp_path / name, server, postgres_url) for name in ("a", "b")]
        instances = [intake(config, store) for config, store in zip(configs, stores, strict=True)]
        meet = threading.Barrier(2, timeout=30)
        for instance in instances:
            first_commit_meets(instance.taker, meet, monkeypatch)
        for instance in instances:
            instance.start()
        try:
            await wait_for(
                lambda: settled(server, len(faxed), len(refused)), timeout=90, what="every move"
            )
        finally:
            for instance in instances:
                await instance.stop()
        assert sorted(server.message_ids(PROCESSED)) == sorted(faxed)  # each once
        assert sorted(server.message_ids(REFUSED)) == sorted(refused)
    finally:
        server.stop()
        server.remove()

    jobs = stores[0].recent_jobs(500)
    assert Counter(job.intake_ref["message_id"] for job in jobs) == Counter(faxed)
    assert rows(postgres_url, "SELECT count(*) FROM imap_taken") == [(len(raw),)]
    replies = rows(
        postgres_url, "SELECT payload FROM outbox WHERE kind = 'imap_refusal' ORDER BY id"
    )
    assert sorted(json_of(payload)["message_id"] for (payload,) in replies) == sorted(refused)
    # The first batch went to one of them: the other lost all of it.
    assert sorted(instance.lost for instance in instances)[1] >= BATCH
    # No file of a lost batch is left: each message taken kept its mail and its document.
    spooled = [path for config in configs for path in config.spool_dir.iterdir()]
    assert Counter(path.suffix for path in spooled) == {".eml": len(faxed), ".pdf": len(faxed)}
    # Losing is no failure: nothing was logged as one.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_daemon_on_postgresql_watches_the_mailbox(
    tmp_path: Path, dovecot: Dovecot, postgres_url: str
) -> None:
    """faxgate run with [imap] and store.url starts (it was refused once) and takes mail."""
    dovecot.append(fax_mail("14155550123", message_id="<daemon@example.com>"))
    dovecot.append(fax_mail("bob@company.example", subject="Lunch?", message_id="<no@x>"))
    sections = {"store": {"url": postgres_url}}
    async with imap_daemon(tmp_path / "state", dovecot, sections) as daemon:
        await wait_for(lambda: settled(dovecot, 1, 1), what="both moves")

        def refusal_replies() -> list[object]:
            # The fax's own report may come too, in reply to the other message.
            return [mail for mail in replies(daemon) if mail["In-Reply-To"] == "<no@x>"]

        await wait_for(refusal_replies, what="the reply to the refusal")
        [job] = daemon.store.recent_jobs(10)
    assert job.intake_ref["message_id"] == "<daemon@example.com>"
    assert len(refusal_replies()) == 1


def first_commit_meets(
    taker: MessageTaker, meet: threading.Barrier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The taker's first commit waits for the other's, so that both go at once."""
    real = taker.commit
    calls = 0

    def commit(batch: list[Prepared]) -> list[Taken]:
        nonlocal calls
        calls += 1
        if calls == 1:
            meet.wait()
        return real(batch)

    monkeypatch.setattr(taker, "commit", commit)


def json_of(payload: object) -> dict[str, Any]:
    found = payload if isinstance(payload, dict) else json.loads(str(payload))
    assert isinstance(found, dict)
    return found
