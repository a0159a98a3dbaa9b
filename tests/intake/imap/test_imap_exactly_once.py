"""Exactly once: a message is moved out of the mailbox only after its jobs are committed,
and one committed but not moved (the daemon stopped in between) is moved on the next
start without being queued again."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from faxgate.intake.imap.session import ImapSession, tls_context
from faxgate.intake.imap.taking import MessageTaker
from faxgate.intake.imap.watcher import ImapIntake
from faxgate.intake.smtp.handler import HandlerConfig
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import wait_for
from tests.intake.imap.conftest import imap_settings
from tests.intake.imap.dovecot import Dovecot
from tests.intake.smtp.testing import SENDER, fax_mail

PROCESSED = "faxgate.processed"


class Killed(BaseException):
    """Stands for the process dying: nothing after it runs, nothing catches it."""


def settings(tmp_path: Path, server: Dovecot) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        imap=imap_settings(server),
        smtp={"allowed_senders": [SENDER]},
    )


def intake(settings: Settings, store: Store) -> ImapIntake:
    taker = MessageTaker(
        HandlerConfig.of(settings), store, Spool(settings.spool_dir), max_size=10**7
    )
    return ImapIntake(settings, taker)


async def killed_before_the_move(
    taking: ImapIntake, first: Callable[[], None] = lambda: None, *, what: str
) -> None:
    """Run the intake until it dies between its commit and its move (after `first`), and
    stop what is left of it."""
    died = threading.Event()

    def die() -> None:
        first()
        died.set()
        raise Killed

    taking.before_move = die
    original = threading.excepthook
    threading.excepthook = lambda args: None if args.exc_type is Killed else original(args)
    try:
        taking.start()
        await wait_for(died.is_set, what=what)
        await taking.stop()
    finally:
        threading.excepthook = original


def uidvalidity(server: Dovecot, mailbox: str) -> int:
    with server.client() as imap:
        status, data = imap.status(mailbox, "(UIDVALIDITY)")
        assert status == "OK"
        return int(data[0].split(b"UIDVALIDITY ")[1].rstrip(b")"))


def taken_rows(store: Store) -> int:
    with store._write() as conn:
        return int(conn.execute("SELECT count(*) FROM imap_taken").fetchone()[0])


async def test_a_stop_between_commit_and_move_neither_loses_nor_repeats(
    tmp_path: Path, dovecot: Dovecot, store: Store
) -> None:
    config = settings(tmp_path, dovecot)
    dovecot.append_many(
        [fax_mail("14155550101", message_id=f"<crash-{n}@example.com>") for n in range(3)]
    )
    await killed_before_the_move(intake(config, store), what="the commit before the move")
    # Committed, not moved: the jobs exist and the messages are still in the mailbox.
    assert len(store.recent_jobs(10)) == 3
    assert dovecot.count("INBOX") == 3
    assert dovecot.count(PROCESSED) == 0

    second = intake(config, store)
    second.start()
    try:
        await wait_for(
            lambda: asyncio.to_thread(dovecot.count, PROCESSED), what="the move on restart"
        )
        await wait_for(lambda: second.passes >= 2, what="a pass after the move")
    finally:
        await second.stop()
    assert dovecot.count(PROCESSED) == 3
    assert dovecot.count("INBOX") == 0
    assert len(store.recent_jobs(10)) == 3  # none queued twice
    assert taken_rows(store) == 3


async def test_a_failed_commit_keeps_nothing_and_leaves_the_message(
    tmp_path: Path, dovecot: Dovecot, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = settings(tmp_path, dovecot)
    dovecot.append(fax_mail("14155550101"))
    running = intake(config, store)
    failures = 0
    real = store.create_jobs

    def full_disk(*args: object, **kwargs: object) -> object:
        nonlocal failures
        failures += 1
        if failures == 1:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "create_jobs", full_disk)
    running.start()
    try:
        await wait_for(
            lambda: asyncio.to_thread(dovecot.count, PROCESSED), what="taken on the retry"
        )
    finally:
        await running.stop()
    assert failures == 2
    assert len(store.recent_jobs(10)) == 1
    assert sorted(p.suffix for p in config.spool_dir.iterdir()) == [".eml", ".pdf"]


async def test_a_move_cut_short_leaves_each_message_once_in_the_folder(
    tmp_path: Path, dovecot: Dovecot, store: Store
) -> None:
    """MOVE need not be atomic: killed mid-way, the copy may be in the folder while the
    original is still in the mailbox. The next start removes the original only."""
    config = settings(tmp_path, dovecot)
    dovecot.append_many(
        [fax_mail("14155550101", message_id=f"<half-{n}@example.com>") for n in range(3)]
    )

    def copy_only() -> None:
        with dovecot.client() as imap:
            imap.select("INBOX")
            imap.create(PROCESSED)
            status, _ = imap.copy("1:*", PROCESSED)
            assert status == "OK"

    await killed_before_the_move(intake(config, store), copy_only, what="the half-done move")
    assert (dovecot.count("INBOX"), dovecot.count(PROCESSED)) == (3, 3)

    second = intake(config, store)
    second.start()
    try:

        async def emptied() -> bool:
            return await asyncio.to_thread(dovecot.count, "INBOX") == 0

        await wait_for(emptied, what="the originals removed")
    finally:
        await second.stop()
    assert sorted(dovecot.message_ids(PROCESSED)) == [f"<half-{n}@example.com>" for n in range(3)]
    assert len(store.recent_jobs(10)) == 3


async def test_a_renumbered_mailbox_is_recognised_by_message_id(
    tmp_path: Path, dovecot: Dovecot, store: Store
) -> None:
    """Taken, then the mailbox made anew (a new UIDVALIDITY, the same message in it): the
    message is moved as taken, not queued again."""
    config = settings(tmp_path, dovecot)
    config = config.model_copy(update={"imap": config.imap.model_copy(update={"mailbox": "Faxes"})})
    raw = fax_mail("14155550101", message_id="<renumbered@example.com>")
    with dovecot.client() as imap:
        imap.create("Faxes")
    dovecot.append(raw, "Faxes")
    await killed_before_the_move(intake(config, store), what="the commit before the move")
    before = uidvalidity(dovecot, "Faxes")
    with dovecot.client() as imap:
        assert imap.delete("Faxes")[0] == "OK"
        assert imap.create("Faxes")[0] == "OK"
    dovecot.append(raw, "Faxes")
    assert uidvalidity(dovecot, "Faxes") != before

    second = intake(config, store)
    second.start()
    try:
        await wait_for(
            lambda: asyncio.to_thread(dovecot.count, PROCESSED), what="the move as taken"
        )
    finally:
        await second.stop()
    assert dovecot.count("Faxes") == 0
    assert len(store.recent_jobs(10)) == 1


async def test_an_idle_is_renewed_and_mail_still_comes_in(
    tmp_path: Path, dovecot: Dovecot, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    base = settings(tmp_path, dovecot)
    config = base.model_copy(
        update={"imap": base.imap.model_copy(update={"idle_renewal": timedelta(seconds=0.2)})}
    )
    running = intake(config, store)
    running.start()
    try:
        await wait_for(lambda: running.passes >= 4, what="IDLE renewed three times")
        dovecot.append(fax_mail("14155550101"))
        await wait_for(lambda: store.recent_jobs(10), what="mail after the renewals")
    finally:
        await running.stop()
    # Each renewal ended cleanly (DONE, then the IDLE's own answer): never a reconnect.
    assert [r.message for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("capability", ["", "IMAP4rev1 LITERAL+"], ids=["move", "copy"])
def test_a_move_of_messages_another_session_moved_does_nothing(
    tmp_path: Path, capability: str
) -> None:
    """Another instance moved them meanwhile: the server answers NO [EXPUNGEISSUED] or OK
    for nothing; either way they are passed over, and the rest still moved."""
    server = Dovecot(tmp_path / "dovecot", capability=capability)
    server.start()
    try:
        server.append_many(
            [fax_mail("14155550101", message_id=f"<gone-{n}@example.com>") for n in range(3)]
        )
        config = settings(tmp_path, server)
        one, other = (ImapSession(config.imap, tls_context(config.imap)) for _ in range(2))
        for session in (one, other):
            session.connect()
            assert session.can_move is (capability == "")  # as named after the login
            session.open("INBOX", [PROCESSED])
        try:
            one.move([1, 2], PROCESSED)
            other.move([1, 2, 3], PROCESSED)  # 1 and 2 are gone from its view
            other.move([3], PROCESSED)  # all gone
            one.delete([1, 2, 3])
        finally:
            one.close()
            other.close()
        expected = [f"<gone-{n}@example.com>" for n in range(3)]
        assert sorted(server.message_ids(PROCESSED)) == expected
        assert server.count("INBOX") == 0
    finally:
        server.stop()
        server.remove()
