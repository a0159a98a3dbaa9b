"""Due jobs claimed with a lease: instances sharing a store each take their own, commit
the claim before any slow IO, and a dead instance's leases run out for another to take."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.store import Lease, NewJob, NewNotification, StaleState, Store
from tests.store.backends import Location, open_store, postgres_only, raw
from tests.store.making import wait_for

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
S = JobState


def new_job(n: int = 0, **values: object) -> NewJob:
    return NewJob(to_number=f"+1415555{n:04d}", intake=Intake.CLI, **values)  # type: ignore[arg-type]


@pytest.fixture
def store(location: Location) -> Iterator[Store]:
    with open_store(location) as opened:
        yield opened


def in_threads(
    work: Callable[[str], None], owners: Iterable[str], *, timeout: float
) -> list[BaseException]:
    """`work(owner)` in a thread of its own for each owner, at once; what they raised."""
    errors: list[BaseException] = []

    def run(owner: str) -> None:
        try:
            work(owner)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return errors


def test_a_claim_takes_due_jobs_oldest_first_and_records_its_lease(store: Store) -> None:
    first, second = store.create_jobs([new_job(1), new_job(2)], now=T0)
    [later] = store.create_jobs([new_job(3, not_before=T0 + timedelta(hours=1))], now=T0)
    [busy] = store.create_jobs([new_job(4)], now=T0)
    store.transition(busy.id, S.SUBMITTING, detail="sending")

    now = T0 + timedelta(minutes=1)
    claimed = store.claim_due_jobs(now, 10, owner="a", lease=LEASE)
    assert [job.id for job in claimed] == [first.id, second.id]
    assert store.lease(first.id) == Lease(owner="a", until=now + LEASE)
    assert store.lease(later.id) is None
    assert store.claim_due_jobs(now, 10, owner="b", lease=LEASE) == []


def test_a_lease_keeps_others_off_until_it_runs_out_and_its_owner_may_renew_it(
    store: Store,
) -> None:
    [job] = store.create_jobs([new_job()], now=T0)
    assert [j.id for j in store.claim_due_jobs(T0, 1, owner="a", lease=LEASE)] == [job.id]
    assert store.claim_due_jobs(T0 + LEASE - timedelta(seconds=1), 1, owner="b", lease=LEASE) == []
    # Its owner takes it again (a job queued again after a busy line), with a new lease.
    renewed = T0 + timedelta(minutes=1)
    assert [j.id for j in store.claim_due_jobs(renewed, 1, owner="a", lease=LEASE)] == [job.id]
    assert store.lease(job.id) == Lease(owner="a", until=renewed + LEASE)
    # Owner "a" died: once the lease has run out, another instance takes the job.
    expired = renewed + LEASE
    assert [j.id for j in store.claim_due_jobs(expired, 1, owner="b", lease=LEASE)] == [job.id]
    assert store.lease(job.id) == Lease(owner="b", until=expired + LEASE)


def test_claims_are_released_on_a_clean_stop(store: Store) -> None:
    jobs = store.create_jobs([new_job(n) for n in range(3)], now=T0)
    store.claim_due_jobs(T0, 3, owner="a", lease=LEASE)
    assert store.release_claims("a", [jobs[0].id]) == 1
    assert store.release_claims("b") == 0
    assert [j.id for j in store.claim_due_jobs(T0, 3, owner="b", lease=LEASE)] == [jobs[0].id]
    assert store.release_claims("a") == 2
    assert store.lease(jobs[1].id) is None


def test_an_expired_lease_never_sends_a_job_twice(store: Store) -> None:
    [job] = store.create_jobs([new_job()], now=T0)
    store.claim_due_jobs(T0, 1, owner="a", lease=LEASE)
    store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
    # "a" stalls past its lease; "b" finds nothing: the job left queued with the claim.
    assert store.claim_due_jobs(T0 + 2 * LEASE, 1, owner="b", lease=LEASE) == []
    with pytest.raises(StaleState):
        store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)


def test_the_providers_limit_counts_every_instances_jobs_and_claims(store: Store) -> None:
    jobs = store.create_jobs([new_job(n) for n in range(10)], now=T0)
    cap = 6

    def claim(owner: str, limit: int, at: datetime = T0) -> list[str]:
        taken = store.claim_due_jobs(at, limit, owner=owner, lease=LEASE, max_in_flight=cap)
        return [job.id for job in taken]

    assert claim("a", 4) == [job.id for job in jobs[:4]]
    assert claim("b", 4) == [job.id for job in jobs[4:6]]  # 4 claimed by a: room for 2
    assert claim("c", 4) == []
    # a sends two: still six in flight or claimed.
    for job in jobs[:2]:
        store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
    assert claim("c", 4) == []
    # a takes its own claims again (they count once), and nothing more.
    assert claim("a", 4) == [job.id for job in jobs[2:4]]
    # One ends: room for one more.
    store.transition(jobs[0].id, S.FAILED, detail="refused")
    assert claim("c", 4) == [jobs[6].id]
    # a and b died: once their claims ran out, they count no more and go to another.
    assert claim("c", 4, T0 + LEASE) == [job.id for job in jobs[2:6]]


@postgres_only
def test_instances_claiming_at_once_never_exceed_the_providers_limit_together(
    location: str,
) -> None:
    cap, owners = 7, ("a", "b", "c")
    with open_store(location) as setup:
        setup.create_jobs([new_job(n) for n in range(30)], now=T0)
    taken: dict[str, list[str]] = {owner: [] for owner in owners}
    start = threading.Barrier(len(owners))

    def instance(owner: str) -> None:
        with open_store(location) as store:
            start.wait()
            for _ in range(5):  # each claim asks for more than the limit leaves
                claimed = store.claim_due_jobs(T0, 5, owner=owner, lease=LEASE, max_in_flight=cap)
                taken[owner] += [job.id for job in claimed]

    assert in_threads(instance, owners, timeout=60) == []
    everyone = [job_id for ids in taken.values() for job_id in ids]
    assert len(set(everyone)) == cap  # the limit reached, never passed
    with open_store(location) as check:
        held = {o: {j for j in ids if check.lease(j).owner == o} for o, ids in taken.items()}  # type: ignore[union-attr]
    assert sum(len(ids) for ids in held.values()) == cap


def submitted(store: Store, jobs: list[Job], polls: list[datetime]) -> None:
    for job, poll in zip(jobs, polls, strict=True):
        store.transition(job.id, S.SUBMITTING, detail="sending")
        store.transition(job.id, S.SUBMITTED, detail="accepted", next_poll_at=poll)


def test_polls_are_claimed_so_two_instances_never_ask_for_one_job_at_once(
    store: Store,
) -> None:
    jobs = store.create_jobs([new_job(n) for n in range(4)], now=T0)
    submitted(store, jobs, [T0 + timedelta(minutes=3 - n) for n in range(4)])
    store.transition(jobs[0].id, S.SENT, detail="callback said sent")  # settled: never polled
    now = T0 + timedelta(minutes=2)
    assert [j.id for j in store.claim_due_polls(now, 1, owner="a", lease=LEASE)] == [jobs[3].id]
    assert [j.id for j in store.claim_due_polls(now, 5, owner="b", lease=LEASE)] == [
        jobs[2].id,
        jobs[1].id,
    ]
    assert store.claim_due_polls(now, 5, owner="c", lease=LEASE) == []
    # The next poll is due again later: its owner takes it again, the others once it ran out.
    store.update_fields(jobs[3].id, next_poll_at=now + timedelta(seconds=30))
    later = now + timedelta(seconds=30)
    assert [j.id for j in store.claim_due_polls(later, 1, owner="a", lease=LEASE)] == [jobs[3].id]
    assert store.claim_due_polls(later, 5, owner="c", lease=LEASE) == []
    expired = later + LEASE
    assert [j.id for j in store.claim_due_polls(expired, 5, owner="c", lease=LEASE)] == [
        jobs[2].id,
        jobs[1].id,
        jobs[3].id,  # most overdue first: its next poll was put later
    ]


def test_a_job_left_submitting_by_a_dead_instance_is_claimed_for_reconciling(
    store: Store,
) -> None:
    jobs = store.create_jobs([new_job(n) for n in range(3)], now=T0)
    store.claim_due_jobs(T0, 3, owner="a", lease=LEASE)
    for job in jobs[:2]:
        store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
    # While a's leases hold, its requests may still be on their way: nobody touches them,
    # not even a itself through this door.
    assert store.claim_orphans(T0 + LEASE / 2, 5, owner="b", lease=LEASE) == []
    assert store.claim_orphans(T0 + LEASE / 2, 5, owner="a", lease=LEASE) == []
    # a died: once its leases ran out, b takes the jobs it left submitting (only those).
    orphans = store.claim_orphans(T0 + LEASE, 5, owner="b", lease=LEASE)
    assert {job.id for job in orphans} == {jobs[0].id, jobs[1].id}
    assert all(job.state is S.SUBMITTING for job in orphans)
    assert store.claim_orphans(T0 + LEASE, 5, owner="c", lease=LEASE) == []
    assert store.lease(jobs[0].id) == Lease(owner="b", until=T0 + 2 * LEASE)


def test_notifications_are_claimed_so_each_is_delivered_by_one_instance(
    store: Store,
) -> None:
    later = T0 + timedelta(hours=1)
    first, second, third = (
        store.add_notification(NewNotification(payload={"n": n}, next_attempt_at=at), now=T0)
        for n, at in ((1, None), (2, None), (3, later))
    )
    assert [n.id for n in store.claim_notifications(T0, 1, owner="a", lease=LEASE)] == [first.id]
    assert [n.id for n in store.claim_notifications(T0, 5, owner="b", lease=LEASE)] == [second.id]
    assert store.claim_notifications(T0, 5, owner="c", lease=LEASE) == []
    # a delivers its own; b died: its claim runs out and c takes it, with the one now due.
    store.mark_delivered(first.id, T0)
    assert [n.id for n in store.claim_notifications(later, 5, owner="c", lease=LEASE)] == [
        second.id,
        third.id,
    ]
    # A delivery that failed waits for its next try, which its owner takes again.
    retry = later + timedelta(minutes=1)
    store.mark_delivery_failed(second.id, "relay said 451", retry)
    assert [n.id for n in store.claim_notifications(retry, 5, owner="c", lease=LEASE)] == [
        third.id,  # due since `later`
        second.id,
    ]


@postgres_only
def test_a_claim_passes_over_rows_another_instance_is_claiming(location: str, store: Store) -> None:
    jobs = store.create_jobs([new_job(n) for n in range(5)], now=T0)
    with open_store(location, busy_timeout=0.5) as other, raw(location) as holder:
        # Another instance's claim in flight: its transaction holds the two oldest rows.
        holder.execute("BEGIN")
        holder.execute(
            "SELECT id FROM jobs ORDER BY created_at, rowid LIMIT 2 FOR UPDATE"
        ).fetchall()
        # Neither waits for those rows nor fails on them: it takes the next ones.
        taken = other.claim_due_jobs(T0, 2, owner="b", lease=LEASE)
        assert [job.id for job in taken] == [job.id for job in jobs[2:4]]
        holder.execute("ROLLBACK")


def test_two_instances_claiming_at_once_send_each_job_exactly_once(location: Location) -> None:
    """Two instances, each its own connections, claim and "send" as the dispatcher does:
    claim (committed), move to submitting expecting queued, then the slow request."""
    count = 60
    with open_store(location) as setup:
        setup.create_jobs([new_job(n) for n in range(count)], now=T0)
    sent: Counter[str] = Counter()
    by_instance: dict[str, int] = {"a": 0, "b": 0}
    sent_lock = threading.Lock()
    start = threading.Barrier(2)
    # Each waits, after its first claim, for the other's: claims made at once are
    # disjoint (without it one instance may take every batch before the other looks).
    first_claims = threading.Barrier(2)

    def instance(owner: str) -> None:
        with open_store(location) as store:
            start.wait()
            first = True
            while claimed := store.claim_due_jobs(T0, 4, owner=owner, lease=LEASE):
                if first:
                    first_claims.wait(timeout=60)
                    first = False
                for job in claimed:
                    store.transition(job.id, S.SUBMITTING, detail="sending", expect=S.QUEUED)
                    with sent_lock:  # the request to the provider
                        sent[job.id] += 1
                        by_instance[owner] += 1
                    store.transition(job.id, S.SUBMITTED, detail="accepted", provider_guid=job.id)

    assert in_threads(instance, by_instance, timeout=120) == []
    assert len(sent) == count
    assert set(sent.values()) == {1}
    assert all(n > 0 for n in by_instance.values()), by_instance  # both did work
    with open_store(location) as check:
        assert check.count_by_state()[S.SUBMITTED] == count


def log_times(path: Path) -> list[tuple[str, str, float]]:
    """The claimer's lines: (what, job id, when), those it finished writing."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    complete = text[: text.rfind("\n") + 1]
    return [
        (what, job_id, float(at))
        for what, job_id, at in (line.split() for line in complete.splitlines())
    ]


def log_lines(path: Path) -> list[tuple[str, str]]:
    return [(what, job_id) for what, job_id, _ in log_times(path)]


def test_an_instance_killed_holding_claims_loses_them_to_another(
    location: Location, tmp_path: Path
) -> None:
    """Instance a claims a batch and is SIGKILLed in the middle of sending it; instance b
    takes a's jobs once a's leases run out, and every job is sent exactly once."""
    lease = 1.0
    count = 12
    with open_store(location) as setup:
        setup.create_jobs([new_job(n) for n in range(count)])
    claimer = Path(__file__).with_name("claimer.py")
    logs = {owner: tmp_path / f"{owner}.log" for owner in ("a", "b")}

    def start(owner: str, *mode: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                str(claimer),
                str(location),
                owner,
                str(lease),
                str(logs[owner]),
                *mode,
            ],
            stderr=subprocess.PIPE,
        )

    with start("a", "hang") as dying:
        try:
            wait_for(lambda: len(log_lines(logs["a"])) >= 5 or dying.poll() is not None, 60.0)
        finally:
            dying.send_signal(signal.SIGKILL)
            dying.wait()
    killed_at = time.monotonic()
    held = {job_id for what, job_id in log_lines(logs["a"]) if what == "claimed"}
    assert len(held) == 5, dying.stderr.read() if dying.stderr else ""

    with start("b") as survivor:
        wait_for(lambda: any(job_id in held for _, job_id in log_lines(logs["b"])), 60.0)
        taken_over = time.monotonic() - killed_at
        assert survivor.wait(timeout=60) == 0, survivor.stderr.read() if survivor.stderr else ""

    sent = Counter(job_id for what, job_id in log_lines(logs["b"]) if what == "sent")
    assert not any(what == "sent" for what, _ in log_lines(logs["a"]))
    assert len(sent) == count
    assert set(sent.values()) == {1}
    # b took a's jobs only once their leases had run out, and soon after a's death.
    lease_end = max(at for what, _, at in log_times(logs["a"]) if what == "claimed")
    first_taken = min(at for what, job_id, at in log_times(logs["b"]) if job_id in held)
    assert first_taken >= lease_end
    assert taken_over < lease + 10
    with open_store(location) as check:
        assert check.count_by_state()[S.SUBMITTED] == count
        assert {check.lease(job_id).owner for job_id in held} == {"b"}  # type: ignore[union-attr]
