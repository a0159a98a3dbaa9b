"""Jobs read back: due jobs and polls, lists and counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faxgate.domain.jobs import JobState
from faxgate.store import Store
from tests.store.backends import sqlite_conn, sqlite_only
from tests.store.making import T0, FakeClock, S, new_job


def test_due_jobs_oldest_first_and_respecting_not_before(store: Store, clock: FakeClock) -> None:
    first, second = store.create_jobs([new_job("+14155550101"), new_job("+14155550102")])
    clock.advance(minutes=1)
    [later] = store.create_jobs([new_job("+14155550103", not_before=T0 + timedelta(minutes=10))])
    clock.advance(minutes=1)
    [third] = store.create_jobs([new_job("+14155550104")])
    [busy] = store.create_jobs([new_job("+14155550105")])
    store.transition(busy.id, S.SUBMITTING, detail="sending")

    now = T0 + timedelta(minutes=5)
    # Created in one second: the order they were created in still holds.
    assert [j.id for j in store.due_jobs(now, limit=10)] == [first.id, second.id, third.id]
    assert [j.id for j in store.due_jobs(now, limit=1)] == [first.id]

    at_the_time = store.due_jobs(T0 + timedelta(minutes=10), limit=10)
    assert [j.id for j in at_the_time] == [first.id, second.id, later.id, third.id]
    assert store.due_jobs(T0 - timedelta(seconds=1), limit=10) == store.due_jobs(T0, limit=10)


def test_jobs_in_states_count_and_recent(store: Store, clock: FakeClock) -> None:
    jobs = []
    for i in range(4):
        jobs += store.create_jobs([new_job(f"+1415555010{i}")])
        clock.advance(seconds=1)
    store.transition(jobs[1].id, S.CANCELLED, detail="cancelled")
    store.transition(jobs[2].id, S.FAILED, detail="refused")
    store.transition(jobs[3].id, S.FAILED, detail="refused")

    assert [j.id for j in store.jobs_in_states([S.FAILED, S.CANCELLED])] == [j.id for j in jobs[1:]]
    assert [j.id for j in store.jobs_in_states([S.FAILED], limit=1)] == [jobs[2].id]
    assert store.jobs_in_states([]) == []
    counts = store.count_by_state()
    assert counts == dict.fromkeys(S, 0) | {S.QUEUED: 1, S.CANCELLED: 1, S.FAILED: 2}
    assert [j.id for j in store.recent_jobs(2)] == [jobs[3].id, jobs[2].id]


def test_find_by_provider_guid(store: Store) -> None:
    [job, _other] = store.create_jobs([new_job(), new_job()])
    store.transition(job.id, S.SUBMITTING, detail="sending")
    store.transition(job.id, S.SUBMITTED, detail="accepted", provider_guid="f" * 40)
    found = store.find_by_provider_guid("f" * 40)
    assert found is not None
    assert found.id == job.id
    assert store.find_by_provider_guid("e" * 40) is None


def test_due_polls_skip_settled_jobs(store: Store) -> None:
    jobs = store.create_jobs([new_job() for _ in range(3)])
    for i, job in enumerate(jobs):
        store.transition(job.id, S.SUBMITTING, detail="sending")
        store.transition(
            job.id,
            S.SUBMITTED,
            detail="accepted",
            next_poll_at=T0 + timedelta(minutes=3 - i),
        )
    store.transition(jobs[0].id, S.SENT, detail="callback said sent")
    now = T0 + timedelta(minutes=2)
    assert [j.id for j in store.due_polls(now, limit=10)] == [jobs[2].id, jobs[1].id]
    assert [j.id for j in store.due_polls(now, limit=1)] == [jobs[2].id]
    assert store.due_polls(T0, limit=10) == []


def test_next_not_before_is_the_earliest_waiting_queued_job(store: Store) -> None:
    assert store.next_not_before() is None
    soon = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    later = soon + timedelta(minutes=5)
    first, second, _ = store.create_jobs(
        [new_job(not_before=later), new_job(not_before=soon), new_job()]
    )
    assert store.next_not_before() == soon
    store.transition(second.id, JobState.CANCELLED, detail="no longer wanted")
    assert store.next_not_before() == later
    store.transition(first.id, JobState.SUBMITTING, detail="its time came")
    assert store.next_not_before() is None


def test_count_in_states(store: Store) -> None:
    first, _, _ = store.create_jobs([new_job(), new_job(), new_job()])
    store.transition(first.id, JobState.SUBMITTING, detail="sending")
    assert store.count_in_states([JobState.SUBMITTING, JobState.SUBMITTED]) == 1
    assert store.count_in_states([JobState.QUEUED]) == 2
    assert store.count_in_states([JobState.SENT]) == 0


@sqlite_only
def test_due_jobs_walk_the_state_and_age_index(store: Store) -> None:
    plan = " ".join(
        row[3]
        for row in sqlite_conn(store).execute(
            "EXPLAIN QUERY PLAN SELECT * FROM jobs WHERE state = 'queued' ORDER BY created_at"
        )
    )
    assert "jobs_by_state_age" in plan
    assert "TEMP B-TREE" not in plan
