"""The health probe's look at the store, on both backends: a real write committed, the
oldest due job, the callbacks overdue; a store that cannot be written said in words."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewJob, Store
from faxgate.store.postgres import PostgresProbe
from faxgate.store.probe import StoreNotWritable, StoreProbe
from tests.postgres import PostgresServer
from tests.store.backends import Location, open_store, postgres_only, raw


def probe_for(location: Location) -> StoreProbe:
    return StoreProbe(location) if isinstance(location, Path) else PostgresProbe(location)


@pytest.fixture
def store(location: Location) -> Iterator[Store]:
    with open_store(location) as opened:
        yield opened


def new_job(**values: object) -> NewJob:
    return NewJob(to_number="+14155550100", intake=Intake.CLI, **values)  # type: ignore[arg-type]


def test_the_probe_commits_a_write_and_changes_nothing(location: Location, store: Store) -> None:
    before = store.schema_version()
    probe_for(location).check_writable()
    assert store.schema_version() == before
    store.create_jobs([new_job()])  # and the store's own connections write on


def test_a_store_held_by_another_writer_is_reported_locked(
    location: Location, store: Store
) -> None:
    with raw(location) as holder:
        holder.execute("BEGIN" if holder.postgres else "BEGIN IMMEDIATE")
        if holder.postgres:
            holder.execute("SELECT * FROM faxgate_schema FOR UPDATE")
        with pytest.raises(StoreNotWritable, match="the store is locked"):
            probe_for(location).check_writable(timedelta(seconds=0.1))
        holder.execute("ROLLBACK")
    probe_for(location).check_writable(timedelta(seconds=0.1))


def test_the_oldest_due_job_and_the_callbacks_overdue(location: Location, store: Store) -> None:
    now = datetime.now(UTC)
    probe = probe_for(location)
    assert probe.oldest_due(now) is None
    assert probe.oldest_due_seconds() == 0.0
    # Queued an hour ago but told to wait until a minute from now: not due.
    store.create_jobs(
        [new_job(not_before=now + timedelta(minutes=1))], now=now - timedelta(hours=1)
    )
    assert probe.oldest_due(now) is None
    # Queued two hours ago, its retry time passed ten minutes ago: due since then.
    (retried,) = store.create_jobs(
        [new_job(not_before=now - timedelta(minutes=10))], now=now - timedelta(hours=2)
    )
    # Queued twenty minutes ago: the longest due.
    (fresh,) = store.create_jobs([new_job()], now=now - timedelta(minutes=20))
    oldest = probe.oldest_due(now)
    assert oldest is not None
    assert (oldest.id, oldest.due, oldest.waited(now)) == (fresh.id, 2, timedelta(minutes=20))
    store.transition(fresh.id, JobState.CANCELLED, detail="test")
    oldest = probe.oldest_due(now)
    assert oldest is not None
    assert (oldest.id, oldest.due, oldest.waited(now)) == (retried.id, 1, timedelta(minutes=10))
    assert 600 <= probe.oldest_due_seconds() < 700

    for job_id in (retried.id,):
        store.transition(job_id, JobState.SUBMITTING, detail="sending")
        store.transition(job_id, JobState.SUBMITTED, detail="accepted", provider_guid="g")
        store.transition(
            job_id, JobState.PRESUMED_SENT, detail="removed", now=now - timedelta(hours=2)
        )
    overdue = probe.overdue_callbacks(now, timedelta(hours=1))
    assert (overdue.count, overdue.job_ids) == (1, (retried.id,))
    assert probe.overdue_callbacks(now, timedelta(hours=3)).count == 0


@postgres_only
def test_a_database_that_takes_no_writes_is_said_so(location: str, store: Store) -> None:
    with raw(location) as conn:
        name = conn.one("SELECT current_database()")
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    with pytest.raises(StoreNotWritable, match="takes no writes"):
        probe_for(location).check_writable()


def test_a_server_that_cannot_be_reached(postgres_server: PostgresServer) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{postgres_server.port}/no_such_database"
    probe = PostgresProbe(closed)
    with pytest.raises(StoreNotWritable, match="cannot be reached"):
        probe.check_writable()
    assert math.isnan(probe.oldest_due_seconds())
