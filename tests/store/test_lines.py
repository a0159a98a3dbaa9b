"""One call at a time per number: each number's queued jobs form a line, and only its
head is due, for the single dispatcher's read and the claims of several instances alike."""

from __future__ import annotations

from datetime import timedelta

import pytest

from faxgate.domain.jobs import Job
from faxgate.store import Store
from tests.store.making import T0, FakeClock, S, new_job

A, B, C = "+14155550171", "+14155550172", "+14155550173"
LEASE = timedelta(minutes=2)


def ids(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


def test_only_the_head_of_each_numbers_line_is_due(store: Store, clock: FakeClock) -> None:
    a1, a2, b1 = store.create_jobs([new_job(A), new_job(A), new_job(B)])
    clock.advance(seconds=1)
    [a3, c1] = store.create_jobs([new_job(A), new_job(C)])

    assert ids(store.due_jobs(T0, 10)) == [a1.id, b1.id, c1.id]
    assert ids(store.due_jobs(T0, 10, per_number=None)) == [a1.id, a2.id, b1.id, a3.id, c1.id]
    assert ids(store.due_jobs(T0, 10, per_number=2)) == [a1.id, a2.id, b1.id, c1.id]

    # In flight: the next to that number waits until the call has ended.
    store.transition(a1.id, S.SUBMITTING, detail="sending")
    assert ids(store.due_jobs(T0, 10)) == [b1.id, c1.id]
    assert ids(store.due_jobs(T0, 10, per_number=2)) == [a2.id, b1.id, c1.id]
    store.transition(a1.id, S.SUBMITTED, detail="accepted")
    store.transition(a1.id, S.SENT, detail="sent")
    assert ids(store.due_jobs(T0, 10)) == [a2.id, b1.id, c1.id]
    assert ids(store.due_jobs(T0, 1)) == [a2.id]


def test_a_busy_retry_goes_before_later_faxes_to_its_number(store: Store) -> None:
    a1, a2, b1 = store.create_jobs([new_job(A), new_job(A), new_job(B)])
    store.transition(a1.id, S.SUBMITTING, detail="sending")
    store.transition(a1.id, S.SUBMITTED, detail="accepted")
    again = T0 + timedelta(minutes=5)
    store.transition(a1.id, S.QUEUED, detail="busy", attempt=2, not_before=again)

    # The retry keeps its place: the line waits for it rather than meet the busy line.
    assert ids(store.due_jobs(T0 + timedelta(minutes=1), 10)) == [b1.id]
    assert ids(store.due_jobs(again, 10)) == [a1.id, b1.id]
    assert a2.id not in ids(store.due_jobs(again, 10))


def test_urgent_goes_first_in_its_line_and_in_the_queue(store: Store, clock: FakeClock) -> None:
    bulk, a1 = store.create_jobs([new_job(B, priority=-1), new_job(A)])
    clock.advance(seconds=1)
    [a_urgent, c1] = store.create_jobs([new_job(A, priority=1), new_job(C)])

    assert ids(store.due_jobs(T0, 10)) == [a_urgent.id, c1.id, bulk.id]
    assert ids(store.due_jobs(T0, 10, per_number=None)) == [a_urgent.id, a1.id, c1.id, bulk.id]
    assert store.get_job(a_urgent.id).priority == 1  # type: ignore[union-attr]


def test_claims_keep_one_call_per_number_across_instances(store: Store) -> None:
    a1, _a2, b1 = store.create_jobs([new_job(A), new_job(A), new_job(B)])
    assert ids(store.claim_due_jobs(T0, 1, owner="one", lease=LEASE)) == [a1.id]
    # The head is claimed, not yet sent: the other instance does not call the number.
    assert ids(store.claim_due_jobs(T0, 10, owner="two", lease=LEASE)) == [b1.id]
    assert store.claim_due_jobs(T0, 10, owner="three", lease=LEASE, max_in_flight=200) == []
    store.transition(a1.id, S.SUBMITTING, detail="sending")
    # Every lease has run out; a2 still waits behind a1, which is at the provider now.
    taken = ids(store.claim_due_jobs(T0 + 4 * LEASE, 10, owner="three", lease=LEASE))
    assert taken == [b1.id]


@pytest.mark.parametrize("per_number", [1, 3])
def test_a_long_queue_to_few_numbers_gives_each_numbers_head(
    store: Store, clock: FakeClock, per_number: int
) -> None:
    numbers = [f"+1415555{n:04d}" for n in range(5)]
    store.create_jobs([new_job(numbers[n % 5]) for n in range(200)])
    due = store.due_jobs(T0, 100, per_number=per_number)
    assert len(due) == 5 * per_number
    assert sorted(job.to_number for job in due) == sorted(numbers * per_number)


def test_how_many_wait_and_why(store: Store, clock: FakeClock) -> None:
    a1, a2, a3, b1 = store.create_jobs([new_job(A), new_job(A), new_job(A), new_job(B)])
    assert [store.ahead_in_line(job.id) for job in (a1, a2, a3, b1)] == [0, 1, 2, 0]
    store.transition(b1.id, S.SUBMITTING, detail="sending")
    [b2] = store.create_jobs([new_job(B)])
    assert store.ahead_in_line(b2.id) == 1  # the call in flight

    later = T0 + timedelta(hours=1)
    [c1, _c2] = store.create_jobs([new_job(C), new_job(C, not_before=later)])
    store.update_fields(
        c1.id, not_before=later, wait_kind="hours", wait_reason="waiting for 11:00 in UTC"
    )
    counts = store.count_waiting(T0, per_number=1)
    # a2, a3 behind a1; b2 behind b1 in flight; c2 is a call tried again later.
    assert counts == {"hours": 1, "sender_limit": 0, "retry": 1, "turn": 3, "error": 0}
    assert store.count_waiting(T0, per_number=None)["turn"] == 0

    # Any move clears why a rule held it back.
    store.transition(c1.id, S.CANCELLED, detail="cancelled")
    cancelled = store.get_job(c1.id)
    assert cancelled is not None
    assert (cancelled.wait_kind, cancelled.wait_reason) == (None, None)


def test_a_new_policy_releases_the_jobs_rules_held_back(store: Store) -> None:
    later = T0 + timedelta(hours=1)
    held, retry = store.create_jobs([new_job(A), new_job(B, not_before=later)])
    store.update_fields(held.id, not_before=later, wait_kind="hours", wait_reason="closed")
    assert store.release_waits() == 1
    released, kept = store.get_job(held.id), store.get_job(retry.id)
    assert released is not None
    assert kept is not None
    assert (released.not_before, released.wait_reason) == (None, None)
    assert kept.not_before == later


def test_the_metric_counts_waiting_jobs_by_why(store: Store) -> None:
    from faxgate import metrics

    store.create_jobs([new_job(A), new_job(A), new_job(A)])
    with metrics.watching_waits(lambda: store.count_waiting(T0, per_number=1)):
        turn = metrics.REGISTRY.get_sample_value("faxgate_jobs_waiting", {"reason": "turn"})
        hours = metrics.REGISTRY.get_sample_value("faxgate_jobs_waiting", {"reason": "hours"})
    assert (turn, hours) == (2, 0)
    assert metrics.REGISTRY.get_sample_value("faxgate_jobs_waiting", {"reason": "turn"}) is None


def test_heads_beyond_the_first_window_of_the_queue_are_found(store: Store) -> None:
    # A hundred faxes to one number before one to another: the first few dozen due jobs
    # hold a single head, and the other number's comes from the walk of every line.
    to_a = store.create_jobs([new_job(A) for _ in range(100)])
    [b1] = store.create_jobs([new_job(B)])
    assert ids(store.due_jobs(T0, 2)) == [to_a[0].id, b1.id]
    assert ids(store.claim_due_jobs(T0, 2, owner="one", lease=LEASE)) == [to_a[0].id, b1.id]
    # Many numbers: the window holds enough heads, in queue order.
    many = store.create_jobs([new_job(f"+1415556{n:04d}") for n in range(300)])
    assert ids(store.due_jobs(T0, 5)) == [to_a[0].id, b1.id, *ids(many[:3])]


def test_within_a_priority_the_senders_take_turns(store: Store, clock: FakeClock) -> None:
    from faxgate.domain.jobs import Intake
    from faxgate.store import NewJob

    def mail(sender: str, n: int, **values: object) -> NewJob:
        return new_job(
            f"+1415557{n:04d}", intake=Intake.SMTP, intake_ref={"sender": sender}, **values
        )

    batch = store.create_jobs([mail("Bulk@Example.com", n) for n in range(50)])
    clock.advance(seconds=5)
    [single] = store.create_jobs([mail("alice@example.org", 100)])
    [cli] = store.create_jobs([new_job(f"+14155571{1:03d}")])
    [urgent] = store.create_jobs([mail("bulk@example.com", 101, priority=1)])

    due = ids(store.due_jobs(T0 + timedelta(seconds=5), 10))
    # The urgent one first; then the batch's first turns, up to the moment the others
    # came (its sender took one turn a second), then theirs, then the batch again.
    assert due[0] == urgent.id
    assert due[1:7] == ids(batch[:6])  # their turns came by the time the others did
    assert set(due[7:9]) == {single.id, cli.id}
    assert due[9:] == ids(batch[6:7])
    # A sender's own faxes keep their order.
    everything = ids(store.due_jobs(T0, 100, per_number=None))
    assert [i for i in everything if i in ids(batch)] == ids(batch)
