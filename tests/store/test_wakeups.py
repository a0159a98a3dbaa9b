"""Word between instances that there is work: LISTEN/NOTIFY on PostgreSQL, sent when the
transaction that made the work commits; on SQLite nothing to hear, the waiter polls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewJob, NewNotification, Store
from tests.postgres import PostgresServer
from tests.store.backends import Location, open_store, postgres_only, sqlite_only

S = JobState
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def new_job() -> NewJob:
    return NewJob(to_number="+14155550100", intake=Intake.CLI)


@pytest.fixture
def store(location: Location) -> Iterator[Store]:
    with open_store(location) as opened:
        yield opened


@postgres_only
def test_another_instance_hears_of_new_jobs_and_notifications_once_committed(
    location: str, store: Store
) -> None:
    with open_store(location) as other:
        heard = other.wakeups()
        try:
            assert heard.wait(0.0) == set()
            [job] = store.create_jobs([new_job()])
            assert heard.wait(10.0) == {"jobs"}
            store.transition(job.id, S.FAILED, detail="refused", notify={"outcome": "failed"})
            assert heard.wait(10.0) == {"outbox"}
            store.add_notification(NewNotification(payload={"n": 1}))
            store.add_notification(NewNotification(payload={"n": 2}))
            assert heard.wait(10.0) == {"outbox"}
            assert heard.wait(0.2) <= {"outbox"}  # the second commit's word, when apart
            store.claim_due_jobs(T0, 1, owner="a", lease=timedelta(minutes=1))
            store.transition(job.id, S.QUEUED, detail="retry asked")  # queued again
            assert heard.wait(10.0) == {"jobs"}
            # A change that fails tells nobody anything.
            naive = replace(new_job(), not_before=datetime(2024, 5, 1))
            with pytest.raises(ValueError, match="naive"):
                store.create_jobs([new_job(), naive])
            started = time.monotonic()
            assert heard.wait(0.3) == set()
            assert time.monotonic() - started >= 0.25  # it waited the time out
        finally:
            heard.close()


@postgres_only
def test_a_listener_whose_server_went_away_says_there_may_be_work(
    location: str, store: Store, postgres_server: PostgresServer
) -> None:
    heard = store.wakeups()
    try:
        postgres_server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        assert heard.wait(10.0) == {"jobs", "outbox"}
        # It listens anew: word comes again.
        store.create_jobs([new_job()])
        assert heard.wait(10.0) >= {"jobs"}
    finally:
        heard.close()


@sqlite_only
def test_on_sqlite_there_is_nothing_to_hear_and_the_wait_is_the_poll(store: Store) -> None:
    heard = store.wakeups()
    store.create_jobs([new_job()])
    started = time.monotonic()
    assert heard.wait(0.2) == set()
    assert time.monotonic() - started >= 0.15
    heard.close()
    assert heard.wait(10.0) == set()  # closed: no more waiting
