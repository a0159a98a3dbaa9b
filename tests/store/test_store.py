"""The store's writes: jobs created and moved with their events, the outbox, several
writers at once, group commits, and a writer killed mid-write."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faxgate.domain.inbound import NewDelivery, NewInboundFax
from faxgate.domain.jobs import FINISHED_STATES, IllegalTransition, Intake, JobState
from faxgate.store import (
    JobNotFound,
    NewDocument,
    NewJob,
    NewNotification,
    StaleState,
    Store,
    StoreError,
)
from faxgate.store.postgres import storable
from faxgate.store.rows import json_to_db
from tests.store.backends import (
    Location,
    Raw,
    add_failing_trigger,
    drop_failing_trigger,
    migrate,
    migrations_of,
    open_store,
    postgres_only,
    raw,
    set_version,
    sqlite_conn,
)
from tests.store.making import (
    DATABASE_ERRORS,
    T0,
    FakeClock,
    S,
    new_job,
    spooled,
    table_counts,
    wait_for,
)

# ------------------------------------------------------------------ creating and reading


def test_create_and_read_back(store: Store) -> None:
    shared = spooled("shared.pdf", b"shared")
    not_before = T0 + timedelta(hours=1)
    [job] = store.create_jobs(
        [
            NewJob(
                to_number="+14155550100",
                intake=Intake.FOLDER,
                intake_ref={"path": "/srv/fax/in/+14155550100/letter.pdf", "size": 6},
                from_line="Acme Ltd",
                cover_to="Ms Smith",
                cover_from="Mr Jones",
                cover_message="Two pages follow. Ünïcode too.",
                reply_to="jones@example.org",
                group_id="drop-1",
                not_before=not_before,
                documents=[
                    NewDocument("Letter.pdf", shared, "application/pdf"),
                    ("scan.tiff", spooled("b.tiff", b"II*"), "image/tiff"),
                ],
            )
        ]
    )
    assert len(job.id) == 12
    assert job.state is S.QUEUED
    assert job.intake is Intake.FOLDER
    assert job.intake_ref == {"path": "/srv/fax/in/+14155550100/letter.pdf", "size": 6}
    assert job.cover_message == "Two pages follow. Ünïcode too."
    assert job.attempt == 1
    assert job.not_before == not_before
    assert job.created_at == job.updated_at == T0
    assert job.created_at.tzinfo is not None
    assert job.provider_guid is None
    assert job.finished_at is None
    assert store.get_job(job.id) == job

    docs = store.documents(job.id)
    assert [(d.seq, d.name, d.content_type) for d in docs] == [
        (0, "Letter.pdf", "application/pdf"),
        (1, "scan.tiff", "image/tiff"),
    ]
    assert docs[0].path == shared.path
    assert (docs[0].size, docs[0].sha256) == (shared.size, shared.sha256)

    [event] = store.events(job.id)
    assert (event.from_state, event.to_state, event.detail, event.at) == (
        None,
        S.QUEUED,
        "queued",
        T0,
    )


def test_one_message_to_several_numbers_is_one_transaction(
    location: Location, store: Store
) -> None:
    jobs = store.create_jobs([new_job(f"+1415555010{i}", group_id="msg-1") for i in range(3)])
    assert len({j.id for j in jobs}) == 3
    assert [j.to_number for j in store.group_jobs("msg-1")] == [j.to_number for j in jobs]

    before = table_counts(location)
    bad = new_job("+14155550109", not_before=datetime(2024, 5, 1, 12, 0))  # naive: refused
    with pytest.raises(ValueError, match="naive"):
        store.create_jobs([new_job("+14155550108"), bad])
    assert table_counts(location) == before


def test_unknown_job(store: Store) -> None:
    assert store.get_job("0000000000zz") is None
    assert store.documents("0000000000zz") == []
    assert store.events("0000000000zz") == []
    with pytest.raises(JobNotFound):
        store.transition("0000000000zz", S.SUBMITTING, detail="x")
    with pytest.raises(JobNotFound):
        store.update_fields("0000000000zz", reason="x")


# ------------------------------------------------------------------ transitions


def test_transition_updates_fields_and_writes_event_and_outbox(
    store: Store, clock: FakeClock
) -> None:
    [job] = store.create_jobs([new_job()])
    t1 = clock.advance(seconds=1)
    job = store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
    assert (job.state, job.updated_at) == (S.SUBMITTING, t1)

    t2 = clock.advance(seconds=2)
    job = store.transition(
        job.id,
        S.SUBMITTED,
        detail="the provider has it",
        expect=S.SUBMITTING,
        data={"status": "P"},
        provider_guid="a" * 40,
        provider_status="P",
        submitted_at=t2,
        next_poll_at=t2 + timedelta(minutes=1),
        poll_interval=timedelta(minutes=1),
    )
    assert job.provider_guid == "a" * 40
    assert job.submitted_at == t2
    assert job.poll_interval == timedelta(minutes=1)
    assert store.notifications(job.id) == []

    t3 = clock.advance(seconds=30)
    job = store.transition(
        job.id,
        S.SENT,
        detail="sent, 2 pages",
        expect=[S.SUBMITTED, S.TRANSMITTING],
        notify={"outcome": "sent"},
        pages=2,
        provider_status="S",
    )
    assert (job.state, job.pages, job.finished_at) == (S.SENT, 2, t3)

    events = store.events(job.id)
    assert [(e.from_state, e.to_state) for e in events] == [
        (None, S.QUEUED),
        (S.QUEUED, S.SUBMITTING),
        (S.SUBMITTING, S.SUBMITTED),
        (S.SUBMITTED, S.SENT),
    ]
    assert events[2].data == {"status": "P"}
    assert events[3].detail == "sent, 2 pages"
    assert [e.at for e in events] == [T0, t1, t2, t3]

    [note] = store.notifications(job.id)
    assert (note.kind, note.payload, note.job_id) == ("report", {"outcome": "sent"}, job.id)
    assert (note.created_at, note.next_attempt_at, note.attempts) == (t3, t3, 0)


def test_transition_with_a_new_notification(store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    later = T0 + timedelta(minutes=5)
    store.transition(
        job.id,
        S.FAILED,
        detail="number refused",
        notify=NewNotification(kind="failure", payload={"why": "x"}, next_attempt_at=later),
    )
    [note] = store.notifications(job.id)
    assert (note.kind, note.payload, note.next_attempt_at) == ("failure", {"why": "x"}, later)


@pytest.mark.parametrize("failing_table", ["events", "outbox"])
def test_transition_is_all_or_nothing(location: Location, store: Store, failing_table: str) -> None:
    [job] = store.create_jobs([new_job()])
    store.transition(job.id, S.SUBMITTING, detail="sending")
    before_job = store.get_job(job.id)
    before = table_counts(location)
    with raw(location) as conn:
        add_failing_trigger(conn, failing_table, "disk on fire")
    with pytest.raises(DATABASE_ERRORS, match="disk on fire"):
        store.transition(
            job.id, S.FAILED, detail="refused", notify={"outcome": "failed"}, reason="refused"
        )
    assert store.get_job(job.id) == before_job
    assert table_counts(location) == before
    # And the store is still usable afterwards.
    with raw(location) as conn:
        drop_failing_trigger(conn, failing_table)
    assert store.transition(job.id, S.FAILED, detail="refused").state is S.FAILED


def test_stale_state(store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
    with pytest.raises(StaleState) as caught:
        store.transition(job.id, S.CANCELLED, detail="cancel", expect=S.QUEUED)
    assert caught.value.actual is S.SUBMITTING
    assert caught.value.expected == {S.QUEUED}
    assert store.get_job(job.id).state is S.SUBMITTING  # type: ignore[union-attr]
    assert len(store.events(job.id)) == 2


def test_illegal_transition_through_the_store(location: Location, store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    store.transition(job.id, S.SUBMITTING, detail="sending")
    store.transition(job.id, S.SUBMITTED, detail="accepted", provider_guid="g")
    sent = store.transition(job.id, S.SENT, detail="sent", notify={"outcome": "sent"})
    before = table_counts(location)
    # A late callback must not move a sent job back, nor report it twice.
    for target in (S.TRANSMITTING, S.FAILED, S.SENT, S.QUEUED, S.CANCELLED):
        with pytest.raises(IllegalTransition):
            store.transition(job.id, target, detail="late callback", notify={"again": True})
    assert store.get_job(job.id) == sent
    assert table_counts(location) == before


def test_finished_at_follows_the_state(store: Store, clock: FakeClock) -> None:
    [job] = store.create_jobs([new_job()])
    failed_at = clock.advance(minutes=1)
    job = store.transition(job.id, S.FAILED, detail="no pages left", reason="no pages left")
    assert job.finished_at == failed_at
    clock.advance(minutes=1)
    job = store.transition(job.id, S.QUEUED, detail="retry asked", attempt=1, reason=None)
    assert job.finished_at is None
    assert job.reason is None
    assert {S.SENT, S.PRESUMED_SENT, S.FAILED, S.CANCELLED} == FINISHED_STATES


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"state": "sent"}, ValueError),
        ({"id": "x"}, ValueError),
        ({"created_at": T0}, ValueError),
        ({"to_number": "+1"}, ValueError),
        ({"bogus; DROP TABLE jobs": 1}, ValueError),
        ({"attempt": 0}, TypeError),
        ({"attempt": "2"}, TypeError),
        ({"pages": True}, TypeError),
        ({"next_poll_at": "soon"}, TypeError),
        ({"next_poll_at": datetime(2024, 5, 1)}, ValueError),  # naive
        ({"poll_interval": 60}, TypeError),
        ({"reason": 3}, TypeError),
    ],
)
def test_only_known_fields_of_the_right_type_may_be_set(
    location: Location, store: Store, fields: dict[str, Any], error: type[Exception]
) -> None:
    [job] = store.create_jobs([new_job()])
    before = table_counts(location)
    with pytest.raises(error):
        store.transition(job.id, S.SUBMITTING, detail="x", **fields)
    with pytest.raises(error):
        store.update_fields(job.id, **fields)
    assert store.get_job(job.id) == job
    assert table_counts(location) == before


def test_update_fields(store: Store, clock: FakeClock) -> None:
    [job] = store.create_jobs([new_job()])
    at = clock.advance(minutes=3)
    updated = store.update_fields(job.id, next_poll_at=at, provider_status="P")
    assert (updated.next_poll_at, updated.provider_status, updated.updated_at) == (at, "P", at)
    assert updated.state is S.QUEUED
    assert len(store.events(job.id)) == 1  # no state change, no event
    with pytest.raises(StaleState):
        store.update_fields(job.id, expect=S.SUBMITTED, reason="x")
    assert store.get_job(job.id) == updated


def test_times_round_trip_to_the_microsecond_and_in_utc(store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    paris = timezone(timedelta(hours=2))
    when = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=paris)
    job = store.update_fields(job.id, not_before=when)
    assert job.not_before == when
    assert job.not_before is not None
    assert job.not_before.utcoffset() == timedelta(0)


# ------------------------------------------------------------------ outbox


def test_outbox_delivery_and_retry(store: Store, clock: FakeClock) -> None:
    a, b = store.create_jobs([new_job(), new_job()])
    store.transition(a.id, S.FAILED, detail="refused", notify={"n": 1})
    clock.advance(seconds=1)
    store.transition(b.id, S.CANCELLED, detail="cancelled", notify={"n": 2})
    inbound = store.add_notification(NewNotification(kind="inbound", payload={"n": 3}))
    assert inbound.job_id is None

    now = clock.advance(seconds=1)
    pending = store.pending_notifications(now, limit=10)
    assert [n.payload["n"] for n in pending] == [1, 2, 3]

    store.mark_delivered(pending[0].id, now)
    retry_at = now + timedelta(minutes=5)
    store.mark_delivery_failed(pending[1].id, "relay said 451", retry_at)
    store.mark_delivery_failed(inbound.id, "mailbox gone", None)  # given up

    assert store.pending_notifications(now, limit=10) == []
    [again] = store.pending_notifications(retry_at, limit=10)
    assert (again.id, again.attempts, again.last_error) == (pending[1].id, 1, "relay said 451")
    delivered = store.get_notification(pending[0].id)
    assert delivered is not None
    assert (delivered.delivered_at, delivered.attempts) == (now, 1)
    given_up = store.get_notification(inbound.id)
    assert given_up is not None
    assert (given_up.next_attempt_at, given_up.delivered_at) == (None, None)
    assert store.pending_notifications(now + timedelta(days=365), limit=10) == [again]


def test_marking_an_unknown_notification_fails(store: Store) -> None:
    with pytest.raises(StoreError, match="no notification"):
        store.mark_delivered(999, T0)
    with pytest.raises(StoreError, match="no notification"):
        store.mark_delivery_failed(999, "x", None)


# ------------------------------------------------------------------ two processes, threads


def test_two_stores_on_one_file_see_each_other(location: Location, store: Store) -> None:
    with open_store(location) as cli:
        [job] = cli.create_jobs([new_job()])
        assert store.get_job(job.id) == job
        # Both saw it queued; the daemon moves it first, the CLI's cancel must not win.
        store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
        with pytest.raises(StaleState):
            cli.transition(job.id, S.CANCELLED, detail="cancelled by a person", expect=S.QUEUED)
        assert cli.get_job(job.id).state is S.SUBMITTING  # type: ignore[union-attr]


def test_a_writer_waits_for_the_other_instead_of_failing(location: Location, store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    with (
        open_store(location, busy_timeout=0.05) as impatient,
        open_store(location) as patient,
        raw(location) as holder,
    ):
        # Another process holds the write lock (SQLite) or the job's row (PostgreSQL).
        if holder.postgres:
            holder.execute("BEGIN")
            holder.execute("SELECT * FROM jobs WHERE id = ? FOR UPDATE", (job.id,))
        else:
            holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(
            (sqlite3.OperationalError, psycopg.errors.LockNotAvailable), match="lock"
        ):
            impatient.transition(job.id, S.SUBMITTING, detail="sending")
        # Readers are not blocked by a writer (WAL).
        assert patient.get_job(job.id) == job

        outcome: list[object] = []
        started = threading.Event()

        def write() -> None:
            started.set()
            try:
                outcome.append(patient.transition(job.id, S.SUBMITTING, detail="sending"))
            except Exception as exc:
                outcome.append(exc)

        worker = threading.Thread(target=write)
        worker.start()
        started.wait()
        worker.join(timeout=0.3)
        assert worker.is_alive(), "the write should wait while the lock is held"
        holder.execute("COMMIT")
        worker.join(timeout=10)
        assert not worker.is_alive()
        [moved] = outcome
        assert getattr(moved, "state", None) is S.SUBMITTING


def test_one_store_shared_by_threads(location: Location, store: Store) -> None:
    jobs = store.create_jobs([new_job() for _ in range(8)])
    errors: list[BaseException] = []

    def drive(job_id: str) -> None:
        try:
            store.transition(job_id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
            store.transition(job_id, S.SUBMITTED, detail="ok", provider_guid=job_id)
            store.transition(job_id, S.SENT, detail="sent", notify={"job": job_id})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(job.id,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert store.count_by_state()[S.SENT] == 8
    assert table_counts(location)["outbox"] == 8


# ------------------------------------------------------------------ crash


def committed_lines(log: Path) -> list[tuple[str, JobState]]:
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    complete = text[: text.rfind("\n") + 1]  # a line cut by the kill says nothing
    return [
        (job_id, JobState(state)) for job_id, state in (ln.split() for ln in complete.splitlines())
    ]


def check_consistent(location: Location, log: Path) -> int:
    """Every job's history and documents agree with its row; returns the number of jobs."""
    with open_store(location) as store:
        if isinstance(location, Path):  # PostgreSQL checks its pages and keys itself
            assert store.integrity_check() == ["ok"]
            with raw(location) as conn:
                assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        jobs = store.recent_jobs(100_000)
        for job in jobs:
            events = store.events(job.id)
            assert events, job.id
            assert (events[0].from_state, events[0].to_state) == (None, S.QUEUED)
            for before, after in itertools.pairwise(events):
                assert after.from_state == before.to_state, job.id
            assert events[-1].to_state == job.state, job.id

            docs = store.documents(job.id)
            assert [d.seq for d in docs] == [0, 1], job.id
            for doc in docs:
                data = doc.path.read_bytes()  # spooled before the job was committed
                assert (len(data), hashlib.sha256(data).hexdigest()) == (doc.size, doc.sha256)

            notes = store.notifications(job.id)
            expected_notes = 1 if job.state in (S.SENT, S.FAILED, S.UNCERTAIN) else 0
            assert len(notes) == expected_notes, job.id
            if job.state in (S.SENT, S.FAILED):
                assert job.provider_guid is not None
                assert job.finished_at is not None

        # Whatever the writer reported as committed survived the kill.
        reached = {(e.job_id, e.to_state) for job in jobs for e in store.events(job.id)}
        for job_id, state in committed_lines(log):
            assert (job_id, state) in reached, (job_id, state)
        return len(jobs)


def writer_reached(child: subprocess.Popen[bytes], log: Path, jobs: int) -> bool:
    if child.poll() is not None:
        raise AssertionError(child.stderr.read() if child.stderr else "the writer died")
    return len({job_id for job_id, _ in committed_lines(log)}) >= jobs


def test_the_store_survives_a_writer_killed_mid_write(location: Location, tmp_path: Path) -> None:
    spool_dir, log = tmp_path / "spool", tmp_path / "log"
    writer = Path(__file__).with_name("store_writer.py")
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    jobs_so_far = 0
    for kill in range(4):
        target = jobs_so_far + rng.randint(2, 24)
        with subprocess.Popen(
            [sys.executable, str(writer), str(location), str(spool_dir), str(log)],
            stderr=subprocess.PIPE,
        ) as child:
            try:
                wait_for(lambda: writer_reached(child, log, target))  # noqa: B023
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
        assert child.returncode == -signal.SIGKILL, f"seed {seed}, kill {kill}"
        counted = check_consistent(location, log)
        assert counted >= target, f"seed {seed}"
        jobs_so_far = counted
    # The writers kept adding where the killed ones stopped.
    assert jobs_so_far >= 8


def noting_transactions(store: Store, mark: str) -> list[str]:
    """`mark` noted for every transaction the store's backend opens from now on."""
    noted: list[str] = []
    transaction = store._backend.transaction

    def counted() -> Any:
        noted.append(mark)
        return transaction()

    store._backend.transaction = counted  # type: ignore[method-assign]
    return noted


def mover(store: Store, results: dict[str, BaseException | JobState]) -> Callable[[str], None]:
    """A thread's work: one job from queued to submitting; its new state, or the error
    raised, in `results`."""

    def move(job_id: str) -> None:
        try:
            moved = store.transition(job_id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
            results[job_id] = moved.state
        except BaseException as error:
            results[job_id] = error

    return move


def test_changes_that_wait_share_one_commit_and_a_failing_one_undoes_only_itself(
    location: Location, store: Store
) -> None:
    jobs = store.create_jobs([new_job() for _ in range(20)])
    stale = jobs[0]
    store.transition(stale.id, S.SUBMITTING, detail="taken by someone else")
    commits = noting_transactions(store, "COMMIT")
    results: dict[str, BaseException | JobState] = {}
    move = mover(store, results)

    # While one holder has the write lock, every change queues up behind it.
    with store._lock:
        threads = [threading.Thread(target=move, args=(job.id,)) for job in jobs]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(store._waiting) == len(jobs))
    for thread in threads:
        thread.join(timeout=30)

    assert commits == ["COMMIT"]  # one fsync for twenty callers
    assert isinstance(results.pop(stale.id), StaleState)
    assert set(results.values()) == {S.SUBMITTING}
    assert store.count_by_state()[S.SUBMITTING] == len(jobs)
    assert len(store.events(stale.id)) == 2  # its failed change left no event behind
    assert table_counts(location)["events"] == 2 * len(jobs)


def test_a_failed_group_commit_fails_every_change_in_it(location: Location, store: Store) -> None:
    jobs = store.create_jobs([new_job() for _ in range(3)])
    before = table_counts(location)
    # Make the shared commit itself fail: a check that waits for COMMIT.
    if isinstance(location, Path):
        sqlite_conn(store).execute("PRAGMA defer_foreign_keys = ON")  # checked at COMMIT
        doomed: tuple[str, tuple[str, ...]] = (
            "INSERT INTO events (job_id, at, to_state, detail) VALUES ('nope', 'x', 'queued', 'x')",
            (),
        )
    else:
        with raw(location) as conn:
            conn.execute(
                "CREATE FUNCTION doomed() RETURNS trigger LANGUAGE plpgsql"
                " AS $$ BEGIN RAISE EXCEPTION 'doomed at commit'; END $$"
            )
            conn.execute(
                "CREATE CONSTRAINT TRIGGER doomed AFTER INSERT ON events"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                " WHEN (NEW.detail = 'doomed') EXECUTE FUNCTION doomed()"
            )
        doomed = (
            "INSERT INTO events (job_id, at, to_state, detail)"
            " VALUES (?, now(), 'queued', 'doomed')",
            (jobs[0].id,),
        )
    errors: list[BaseException] = []

    def move(job_id: str) -> None:
        try:
            store.update_fields(job_id, expect=S.QUEUED, reason="x")
        except BaseException as error:
            errors.append(error)

    with store._lock:
        threads = [threading.Thread(target=move, args=(job.id,)) for job in jobs]
        for thread in threads:
            thread.start()
        wait_for(lambda: len(store._waiting) == len(jobs))
        store._waiting[1].body = lambda conn: conn.execute(*doomed)
    for thread in threads:
        thread.join(timeout=30)
    assert len(errors) == len(jobs)
    assert all(isinstance(error, DATABASE_ERRORS) for error in errors)
    assert table_counts(location) == before
    assert store.get_job(jobs[0].id) == jobs[0]


def test_reads_see_every_committed_change_at_once(store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    for state in (S.SUBMITTING, S.SUBMITTED, S.SENT):
        store.transition(job.id, state, detail=state.value)
        assert store.get_job(job.id).state is state  # type: ignore[union-attr]


def test_every_call_a_job_made_is_remembered_and_older_stores_learn_theirs(
    location: Location,
) -> None:
    path = location
    with raw(path) as conn:  # a store as version 3 left it, with history
        migrate(conn, migrations_of(location)[:3])
    with open_store(path) as store:
        [job] = store.create_jobs([new_job()])
        store.transition(job.id, S.SUBMITTING, detail="sending")
        store.transition(job.id, S.SUBMITTED, detail="ok", data={"guid": "g1"}, provider_guid="g1")
        store.transition(
            job.id, S.QUEUED, detail="busy", data={"guid": "g1"}, provider_guid=None, attempt=2
        )
        store.transition(job.id, S.SUBMITTING, detail="sending again")
        store.transition(job.id, S.SUBMITTED, detail="ok", provider_guid="g2")
    with raw(path) as conn:  # back to version 3: as if those calls predated the table
        conn.execute("DROP TABLE provider_calls")
        conn.execute("DROP TABLE unmatched_reports")  # later versions' tables
        conn.execute("DROP TABLE imap_taken")
        conn.execute("DROP TABLE document_bytes")
        conn.execute("DROP TABLE instances")
        conn.execute("ALTER TABLE jobs DROP COLUMN lease_owner")
        conn.execute("ALTER TABLE jobs DROP COLUMN lease_until")
        conn.execute("ALTER TABLE outbox DROP COLUMN lease_owner")
        conn.execute("ALTER TABLE outbox DROP COLUMN lease_until")
        conn.execute("DROP INDEX jobs_by_line")
        conn.execute("DROP INDEX jobs_by_priority")
        conn.execute("DROP INDEX jobs_by_source")
        conn.execute("DROP INDEX jobs_by_source_turn")
        for column in ("priority", "wait_kind", "wait_reason", "source", "turn_at"):
            conn.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
        for index in ("documents_by_sha256", "jobs_by_finished", "documents_by_removed"):
            conn.execute(f"DROP INDEX {index}")
        conn.execute("DROP INDEX inbound_faxes_by_document")
        conn.execute("DROP INDEX inbound_faxes_by_sha256")
        conn.execute("DROP INDEX inbound_faxes_by_removed")
        conn.execute("ALTER TABLE documents DROP COLUMN removed_at")
        conn.execute("ALTER TABLE inbound_faxes DROP COLUMN removed_at")
        set_version(conn, 3)
    with open_store(path) as store:
        assert (store.call_owner("g1"), store.call_owner("g2")) == (job.id, job.id)
        assert store.call_owner("never") is None


def test_unmatched_reports_are_kept_bounded_by_age_and_count(location: Location) -> None:
    start = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    with open_store(location) as store:
        keep = timedelta(hours=1)
        for n in range(4):
            dropped = store.keep_unmatched(
                f"g{n}",
                "S",
                {"Guid": f"g{n}", "StatusCode": "S"},
                now=start + timedelta(minutes=n),
                keep_for=keep,
                keep_at_most=3,
            )
        assert dropped == 1  # the oldest, for room
        assert [r.guid for r in store.unmatched_reports()] == ["g1", "g2", "g3"]
        assert store.unmatched_reports("g2")[0].body == {"Guid": "g2", "StatusCode": "S"}
        # The same report twice is kept once; another status of the same GUID is kept too.
        for status in ("S", "E"):
            store.keep_unmatched(
                "g3", status, {}, now=start + timedelta(minutes=5), keep_for=keep, keep_at_most=9
            )
        assert [r.status for r in store.unmatched_reports("g3")] == ["S", "E"]
        store.keep_unmatched(
            "g9", "S", {}, now=start + timedelta(minutes=63), keep_for=keep, keep_at_most=9
        )
        assert store.unmatched_guids() == {"g3", "g9"}  # older than an hour: gone
        store.drop_unmatched("g3")
        assert store.unmatched_guids() == {"g9"}


@postgres_only
def test_a_group_undone_to_break_a_deadlock_with_another_instance_runs_again(
    location: str, store: Store
) -> None:
    x, y = store.create_jobs([new_job(), new_job()])
    tries = noting_transactions(store, "BEGIN")
    results: dict[str, BaseException | JobState] = {}
    move = mover(store, results)

    with raw(location) as other, raw(location) as watcher:
        # Another instance holds y and, later, asks for x: a deadlock with the group below
        # (x, then y). Its own deadlock check waits long, so the store's side breaks it.
        other.execute("SET deadlock_timeout = '60s'")
        other.execute("BEGIN")
        other.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (y.id,))
        with store._lock:  # x's change, then y's, wait for one group
            threads = []
            for job in (x, y):
                threads.append(threading.Thread(target=move, args=(job.id,)))
                threads[-1].start()
                wait_for(lambda: len(store._waiting) == len(threads))
        wait_for(lambda: watcher.one("SELECT count(*) FROM pg_locks WHERE NOT granted") >= 1)
        taking_x = threading.Thread(
            target=other.execute, args=("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (x.id,))
        )
        taking_x.start()
        taking_x.join(timeout=30)  # granted once the store's group was undone
        assert not taking_x.is_alive()
        other.execute("COMMIT")
    for thread in threads:
        thread.join(timeout=30)
    assert results == {x.id: S.SUBMITTING, y.id: S.SUBMITTING}
    # The group ran again, whole (more than once when it took x back before the other
    # instance did, and the deadlock came again).
    assert len(tries) >= 2
    assert [e.to_state for e in store.events(y.id)] == [S.QUEUED, S.SUBMITTING]


def test_text_with_nul_is_kept_where_each_backend_can(location: Location, store: Store) -> None:
    [job] = store.create_jobs(
        [
            new_job(
                cover_message="before\x00after",
                intake_ref={"sender": "a@example.org", "subject": "odd\x00subject"},
            )
        ],
        now=T0,
    )
    kept = store.get_job(job.id)
    assert kept is not None
    # PostgreSQL's text cannot hold NUL: it becomes U+FFFD there; SQLite keeps it.
    nul = "\x00" if isinstance(location, Path) else "\ufffd"
    assert kept.cover_message == f"before{nul}after"
    assert kept.intake_ref["subject"] == f"odd{nul}subject"  # in JSON too
    # A JSON field is still read with such a row among those counted.
    assert store.count_intake_jobs(Intake.SMTP, T0, ref="sender", value="a@example.org") == 1


def test_what_an_intake_records_with_its_jobs_goes_in_the_same_transaction(
    location: Location, store: Store
) -> None:
    def record(conn: Any) -> None:  # as the IMAP intake writes: sqlite3's call, `?`
        conn.execute(
            "INSERT INTO imap_taken (mailbox, uidvalidity, uid, message_id, outcome, taken_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            ("INBOX", 7, 42, "<m@x>", "processed", "2024-05-01T10:00:00.000000Z"),
        )

    [job] = store.create_jobs([new_job()], also=record)
    with raw(location) as conn:
        assert conn.one("SELECT uid FROM imap_taken WHERE mailbox = 'INBOX'") == 42

    def fail(conn: Any) -> None:
        record(conn)  # the same message again: its key is taken
        raise AssertionError("not reached")

    before = table_counts(location)
    with pytest.raises(DATABASE_ERRORS):
        store.create_jobs([new_job()], also=fail)
    assert table_counts(location) == before  # the jobs went with it
    assert store.get_job(job.id) is not None


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ({"s": "a\x00b"}, {"s": "a\ufffdb"}),
        ({"s": "a\\u0000b"}, {"s": "a\\u0000b"}),  # a backslash and "u0000", as written
        ({"s": "\\\x00"}, {"s": "\\\ufffd"}),
        ({"s": "plain"}, {"s": "plain"}),
    ],
)
def test_json_with_nul_as_postgresql_keeps_it(value: dict[str, str], kept: dict[str, str]) -> None:
    (text, number) = storable((json_to_db(value), 3))
    assert (json.loads(text), number) == (kept, 3)


def ids_drawn(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    drawn = iter(ids)
    monkeypatch.setattr("faxgate.store.jobs.new_job_id", lambda now: next(drawn))


def test_a_job_id_already_taken_is_drawn_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids_drawn(monkeypatch, "aaaaaaaaaaaa", "aaaaaaaaaaaa", "bbbbbbbbbbbb")
    first, second = store.create_jobs([new_job(), new_job()])
    assert (first.id, second.id) == ("aaaaaaaaaaaa", "bbbbbbbbbbbb")


def behind_the_lock(work: Callable[[], object], other: Raw, watcher: Raw) -> object:
    """`work()` in a thread while `other` holds its transaction open; once `watcher` sees
    a lock waited for, `other` commits. What `work` returned, or the error it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    working = threading.Thread(target=run)
    working.start()
    wait_for(lambda: watcher.one("SELECT count(*) FROM pg_locks WHERE NOT granted") >= 1)
    other.execute("COMMIT")
    working.join(timeout=30)
    [result] = outcome
    return result


@postgres_only
def test_a_job_id_another_instance_is_taking_at_that_moment_is_drawn_again(
    location: str, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids_drawn(monkeypatch, "aaaaaaaaaaaa", "bbbbbbbbbbbb")
    with raw(location) as other, raw(location) as watcher:
        # Another instance has inserted a job under the same id, not committed yet: the
        # check cannot see it.
        other.execute("BEGIN")
        other.execute(
            "INSERT INTO jobs (id, created_at, updated_at, state, intake, to_number)"
            " VALUES ('aaaaaaaaaaaa', now(), now(), 'queued', 'cli', '+14155550100')"
        )
        created = behind_the_lock(lambda: store.create_jobs([new_job()]), other, watcher)
    assert isinstance(created, list), created
    [job] = created
    assert job.id == "bbbbbbbbbbbb"
    assert store.count_by_state()[S.QUEUED] == 2


def inbound_fax(guid: str = "f" * 40) -> NewInboundFax:
    return NewInboundFax(
        provider_guid=guid,
        to_number="+14155550100",
        from_number="+14155550199",
        pages=2,
        arrived_at=T0,
        route="default",
        document=None,
        note="no document",
    )


def test_an_inbound_fax_is_recorded_once_with_its_deliveries(store: Store) -> None:
    deliveries = [NewDelivery(kind="email", target="desk@example.org")]
    fax, new = store.record_inbound(inbound_fax(), deliveries)
    again, new_again = store.record_inbound(inbound_fax(), deliveries)
    assert (new, new_again, again) == (True, False, fax)
    [delivery] = store.inbound_deliveries(fax.id)
    assert (delivery.kind, delivery.target, delivery.attempts) == ("email", "desk@example.org", 0)
    assert [n.payload["fax_id"] for n in store.pending_notifications(T0, 10)] == [fax.id]


@postgres_only
def test_an_inbound_fax_another_instance_is_recording_at_that_moment_is_recorded_once(
    location: str, store: Store
) -> None:
    deliveries = [NewDelivery(kind="email", target="desk@example.org")]
    with raw(location) as other, raw(location) as watcher:
        # The provider's callback reached another instance too, which is recording it.
        other.execute("BEGIN")
        other.execute(
            "INSERT INTO inbound_faxes (id, received_at, provider_guid, to_number, route)"
            " VALUES ('theirs000000', now(), ?, '+14155550100', 'default')",
            ("f" * 40,),
        )
        result = behind_the_lock(
            lambda: store.record_inbound(inbound_fax(), deliveries), other, watcher
        )
    assert isinstance(result, tuple), result
    fax, new = result
    assert (fax.id, new) == ("theirs000000", False)
    assert store.pending_notifications(T0 + timedelta(days=9999), 10) == []  # no delivery twice
