"""An instance's leases while it lives: renewed before they run out, never once they
have; read back by owner; given up on a clean stop."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from faxgate.domain.jobs import Intake, JobState
from faxgate.store import (
    Holder,
    Lease,
    Member,
    NewJob,
    NewNotification,
    Share,
    Store,
    gone_after,
    new_owner,
)
from faxgate.store.sharing import KEEP_GONE
from tests.store.backends import Location, open_store

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
S = JobState


@pytest.fixture
def store(location: Location) -> Iterator[Store]:
    with open_store(location) as opened:
        yield opened


def new_job(n: int) -> NewJob:
    return NewJob(to_number=f"+1415555{n:04d}", intake=Intake.CLI)


def test_renewal_keeps_the_faxes_being_sent_and_the_notifications_being_delivered(
    store: Store,
) -> None:
    sending, queued, other = store.create_jobs([new_job(n) for n in range(3)], now=T0)
    store.claim_due_jobs(T0, 2, owner="a", lease=LEASE)
    store.claim_due_jobs(T0, 1, owner="b", lease=LEASE)
    store.transition(sending.id, S.SUBMITTING, detail="sending")
    note = store.add_notification(NewNotification(job_id=None, kind="mail", payload={}), now=T0)
    assert [n.id for n in store.claim_notifications(T0, 5, owner="a", lease=LEASE)] == [note.id]

    later = T0 + timedelta(seconds=20)
    assert store.renew_claims("a", later, LEASE) == 2
    assert store.lease(sending.id) == Lease("a", later + LEASE)
    # A queued job is not held for ever: its claim runs out if it is not sent.
    assert store.lease(queued.id) == Lease("a", T0 + LEASE)
    assert store.lease(other.id) == Lease("b", T0 + LEASE)
    assert store.claim_notifications(later + timedelta(seconds=29), 5, owner="b", lease=LEASE) == []

    # Once delivered, a notification's lease is left to run out.
    store.mark_delivered(note.id, later)
    assert store.renew_claims("a", later, LEASE) == 1


def test_a_lease_that_ran_out_is_not_renewed(store: Store) -> None:
    [job] = store.create_jobs([new_job(1)], now=T0)
    store.claim_due_jobs(T0, 1, owner="a", lease=LEASE)
    store.transition(job.id, S.SUBMITTING, detail="sending")
    late = T0 + LEASE + timedelta(seconds=1)
    assert store.renew_claims("a", late, LEASE) == 0
    assert [j.id for j in store.claim_orphans(late, 5, owner="b", lease=LEASE)] == [job.id]
    assert store.renew_claims("a", late, LEASE) == 0
    assert store.lease(job.id) == Lease("b", late + LEASE)


def test_jobs_held_by_an_owner_in_some_states(store: Store) -> None:
    first, second, third = store.create_jobs([new_job(n) for n in range(3)], now=T0)
    store.claim_due_jobs(T0, 2, owner="a", lease=LEASE)
    store.transition(first.id, S.SUBMITTING, detail="sending")
    assert [j.id for j in store.jobs_held("a", [S.SUBMITTING])] == [first.id]
    assert {j.id for j in store.jobs_held("a", [S.SUBMITTING, S.QUEUED])} == {first.id, second.id}
    assert store.jobs_held("b", [S.SUBMITTING, S.QUEUED]) == []
    assert store.jobs_held("a", []) == []
    assert third.id not in {j.id for j in store.jobs_held("a", list(S))}


def test_a_clean_stop_gives_up_notifications(store: Store) -> None:
    note = store.add_notification(NewNotification(job_id=None, kind="mail", payload={}), now=T0)
    store.claim_notifications(T0, 5, owner="a", lease=LEASE)
    assert store.release_notifications("a") == 1
    assert [n.id for n in store.claim_notifications(T0, 5, owner="b", lease=LEASE)] == [note.id]


def test_each_instance_has_a_name_of_its_own() -> None:
    assert new_owner() != new_owner()
    assert Share(new_owner(), timedelta(minutes=2)).renew_every == timedelta(seconds=40)


def test_the_instances_holding_work_and_what(store: Store) -> None:
    sending, *_ = store.create_jobs([new_job(n) for n in range(3)], now=T0)
    store.claim_due_jobs(T0, 2, owner="a", lease=LEASE)
    store.transition(sending.id, S.SUBMITTING, detail="sending")
    store.add_notification(NewNotification(job_id=None, kind="mail", payload={}), now=T0)
    store.claim_notifications(T0, 5, owner="b", lease=LEASE)
    assert store.holders(T0) == [
        Holder("a", sending=1, claimed=1, notifications=0),
        Holder("b", sending=0, claimed=0, notifications=1),
    ]
    assert store.holders(T0 + LEASE) == []  # every lease ran out


def test_the_cluster_shows_each_instance_alive_or_gone_with_what_it_holds(store: Store) -> None:
    a = Share("a", LEASE, host="gw1", pid=41)
    b = Share("b", LEASE, host="gw2", pid=42)
    store.instance_seen(a, version="1.0", started_at=T0, now=T0)
    store.instance_seen(b, version="1.1", started_at=T0 + timedelta(seconds=1), now=T0)
    [job, _] = store.create_jobs([new_job(1), new_job(2)], now=T0)
    store.claim_due_jobs(T0, 1, owner="a", lease=LEASE)
    store.transition(job.id, S.SUBMITTING, detail="sending")

    now = T0 + timedelta(seconds=10)
    store.instance_seen(a, version="1.0", started_at=T0, now=now)
    first, second = store.cluster(now, gone_after(LEASE))
    assert first == Member(
        "a",
        alive=True,
        host="gw1",
        pid=41,
        version="1.0",
        started_at=T0,
        last_seen=now,
        sending=1,
    )
    assert (second.owner, second.alive, second.version, second.held_jobs) == ("b", True, "1.1", 0)

    # b unseen for three leases: gone, listed after the alive.
    later = T0 + gone_after(LEASE) + timedelta(seconds=1)
    store.instance_seen(a, version="1.0", started_at=T0, now=later)
    assert [(m.owner, m.alive) for m in store.cluster(later, gone_after(LEASE))] == [
        ("a", True),
        ("b", False),
    ]
    # A clean stop: gone at once; seen again (started anew under that name): alive.
    store.instance_stopped("a", later)
    stopped = store.cluster(later, gone_after(LEASE))
    assert [(m.owner, m.alive, m.stopped_at) for m in stopped] == [
        ("a", False, later),
        ("b", False, None),
    ]
    store.instance_seen(a, version="1.0", started_at=T0, now=later)
    assert store.cluster(later, gone_after(LEASE))[0].alive


def test_an_instance_holding_work_without_a_row_is_listed_alive(store: Store) -> None:
    store.create_jobs([new_job(1)], now=T0)
    store.claim_due_jobs(T0, 1, owner="old", lease=LEASE)
    assert store.cluster(T0, gone_after(LEASE)) == [Member("old", alive=True, claimed=1)]


def test_instances_gone_long_ago_are_pruned(store: Store) -> None:
    store.instance_seen(Share("old", LEASE), version="1", started_at=T0, now=T0)
    later = T0 + KEEP_GONE + timedelta(seconds=1)
    store.instance_seen(Share("new", LEASE), version="1", started_at=later, now=later)
    assert [m.owner for m in store.cluster(later, gone_after(LEASE))] == ["new"]
