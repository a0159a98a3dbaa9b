"""The tracker against a real SQLite store: reports move jobs forward, once, with one report."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from faxgate import metrics
from faxgate.domain.jobs import Intake, Job, JobState, RetryPolicy, RetryRule
from faxgate.domain.provider import FaxReport
from faxgate.hellofax.models import Transmission
from faxgate.sending.tracker import UNMATCHED_KEEP, Tracker
from faxgate.store import NewJob, Store
from tests.conftest import wait_for
from tests.store.making import FakeClock

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    busy=RetryRule(extra_tries=2, delay=timedelta(minutes=5)),
    no_answer=RetryRule(extra_tries=1, delay=timedelta(minutes=10)),
)
S = JobState


def transmission(guid: str, status: str, error: str | None = None, **extra: Any) -> FaxReport:
    """A v1 transmission as the provider seam carries it."""
    return Transmission.from_api(
        {
            "Transaction": {
                "Guid": guid,
                "To": "14155550123",
                "StatusCode": status,
                "ErrorCode": error,
                "IsInbound": False,
                "CreatedAt": str(int(T0.timestamp())),
                "UpdatedAt": str(int(T0.timestamp())),
                "NumPagesBilled": 2 if status in ("T", "S") else 0,
                **extra,
            }
        }
    ).report()


def submit(
    store: Store,
    job: Job,
    guid: str,
    *,
    now: datetime | None = None,
    first_interval: timedelta = timedelta(seconds=30),
) -> Job:
    """Do what the dispatcher does: submitting, then submitted with the provider's GUID."""
    at = now or datetime.now(UTC)
    store.transition(job.id, S.SUBMITTING, detail="submitting", now=at, submitted_at=at)
    return store.transition(
        job.id,
        S.SUBMITTED,
        detail="submitted",
        expect=S.SUBMITTING,
        now=at,
        provider_guid=guid,
        provider_status="P",
        next_poll_at=at + first_interval,
        poll_interval=first_interval,
    )


def submitted_job(
    store: Store,
    guid: str,
    *,
    to: str = "+14155550123",
    now: datetime | None = None,
    first_interval: timedelta = timedelta(seconds=30),
) -> Job:
    """A new job, submitted to the provider as `guid`."""
    (job,) = store.create_jobs([NewJob(to_number=to, intake=Intake.CLI)], now=now)
    return submit(store, job, guid, now=now, first_interval=first_interval)


def outcome_count(state: str, reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "faxgate_outcomes_total", {"state": state, "reason": reason}
    )
    return value or 0.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3", clock=clock) as opened:
        yield opened


@pytest.fixture
def progress() -> list[Job]:
    return []


@pytest.fixture
def tracker(store: Store, clock: FakeClock, progress: list[Job]) -> Tracker:
    return Tracker(store, POLICY, clock=clock, on_progress=progress.append)


async def test_transmitting_then_sent_writes_one_report(
    store: Store, tracker: Tracker, progress: list[Job]
) -> None:
    job = submitted_job(store, "g1", now=T0)
    sent_before = outcome_count("sent", "S")

    moved = await tracker.observe(transmission("g1", "T"), source="poll")
    assert moved is not None
    assert moved.state is S.TRANSMITTING
    assert moved.provider_status == "T"
    assert moved.next_poll_at == job.next_poll_at  # the poller's schedule is kept
    assert store.notifications(job.id) == []

    done = await tracker.observe(transmission("g1", "S"), source="callback")
    assert done is not None
    assert done.state is S.SENT
    assert (done.provider_status, done.provider_error, done.pages) == ("S", None, 2)
    assert done.reason == "the fax was sent"
    assert done.next_poll_at is None
    assert done.finished_at == T0

    (report,) = store.notifications(job.id)
    assert report.kind == "report"
    assert report.payload == {
        "job_id": job.id,
        "state": "sent",
        "reason": "the fax was sent",
        "status_code": "S",
        "error_code": None,
        "pages": 2,
        "attempts": 1,
        "provider_guid": "g1",
    }
    assert [e.to_state for e in store.events(job.id)] == [
        S.QUEUED,
        S.SUBMITTING,
        S.SUBMITTED,
        S.TRANSMITTING,
        S.SENT,
    ]
    assert store.events(job.id)[-1].data == {"source": "callback", "guid": "g1", "status": "S"}
    assert [j.state for j in progress] == [S.TRANSMITTING, S.SENT]
    assert outcome_count("sent", "S") == sent_before + 1


async def test_repeated_and_out_of_order_reports_change_nothing(
    store: Store, tracker: Tracker, progress: list[Job]
) -> None:
    job = submitted_job(store, "g1", now=T0)
    await tracker.observe(transmission("g1", "S"), source="callback")
    events = store.events(job.id)
    progress.clear()

    for late in ("S", "S", "T", "P", "E"):
        error = "U" if late == "E" else None
        seen = await tracker.observe(transmission("g1", late, error), source="callback")
        assert seen is not None
        assert seen.state is S.SENT

    assert store.events(job.id) == events
    assert len(store.notifications(job.id)) == 1
    assert progress == []


async def test_a_late_pending_does_not_undo_transmitting(store: Store, tracker: Tracker) -> None:
    job = submitted_job(store, "g1", now=T0)
    await tracker.observe(transmission("g1", "T"), source="poll")
    seen = await tracker.observe(transmission("g1", "P"), source="poll")
    assert seen is not None
    assert seen.state is S.TRANSMITTING
    assert len(store.events(job.id)) == 4


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        ("E", "A", "not allocated"),
        ("E", "D", "disconnected or unreachable"),
        ("E", "L", "blacklisted"),
        ("E", "U", "unknown reason"),
        ("E", None, "failed to convert"),
        ("H", None, "on hold"),
        ("O", None, "on hold"),  # the newer spelling of on hold
    ],
)
async def test_failures_end_with_one_report(
    store: Store, tracker: Tracker, status: str, error: str | None, words: str
) -> None:
    job = submitted_job(store, "g1", now=T0)
    failed = await tracker.observe(transmission("g1", status, error), source="callback")
    assert failed is not None
    assert failed.state is S.FAILED
    assert failed.reason is not None
    assert words in failed.reason
    assert failed.provider_error == error
    (report,) = store.notifications(job.id)
    assert report.payload["state"] == "failed"
    assert report.payload["reason"] == failed.reason
    assert report.payload["error_code"] == error


async def test_busy_is_queued_again_then_fails_with_one_report(
    store: Store, tracker: Tracker, clock: FakeClock, progress: list[Job]
) -> None:
    job = submitted_job(store, "g1", now=T0)
    busy_before = outcome_count("failed", "B")

    for attempt, guid in enumerate(("g1", "g2"), start=1):
        again = await tracker.observe(transmission(guid, "E", "B"), source="callback")
        assert again is not None
        assert again.state is S.QUEUED
        assert again.attempt == attempt + 1
        assert again.not_before == clock.now + timedelta(minutes=5)
        assert again.provider_guid is None
        assert again.provider_status is None
        assert again.next_poll_at is None
        assert again.reason is not None
        assert again.reason.startswith("the line was busy; calling again")
        assert store.events(job.id)[-1].data["guid"] == guid
        assert store.notifications(job.id) == []
        # A repeat of the same callback now names no job: the GUID was let go.
        assert await tracker.observe(transmission(guid, "E", "B"), source="callback") is None
        clock.now += timedelta(minutes=5)
        submit(store, again, f"g{attempt + 1}", now=clock.now)

    last = await tracker.observe(transmission("g3", "E", "B"), source="callback")
    assert last is not None
    assert last.state is S.FAILED
    assert last.attempt == 3
    assert last.reason == "the line was busy (called 3 times)"
    (report,) = store.notifications(job.id)
    assert report.payload["attempts"] == 3
    assert report.payload["provider_guid"] == "g3"
    assert [j.state for j in progress] == [S.QUEUED, S.QUEUED, S.FAILED]
    assert outcome_count("failed", "B") == busy_before + 1


async def test_unknown_guid_is_logged_and_ignored(
    tracker: Tracker, progress: list[Job], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="faxgate.tracker"):
        assert await tracker.observe(transmission("nobody", "S"), source="callback") is None
    assert any(
        "unknown transmission guid=nobody" in r.getMessage() and r.levelno == logging.INFO
        for r in caplog.records
    )
    assert progress == []


async def test_inbound_transmissions_are_not_the_trackers(store: Store, tracker: Tracker) -> None:
    job = submitted_job(store, "g1", now=T0)
    seen = await tracker.observe(transmission("g1", "S", IsInbound=True), source="callback")
    assert seen is None
    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.SUBMITTED


async def test_a_status_nobody_published_moves_nothing(store: Store, tracker: Tracker) -> None:
    job = submitted_job(store, "g1", now=T0)
    unknown = dataclasses.replace(transmission("g1", "S"), status_code=None)
    seen = await tracker.observe(unknown, source="callback")
    assert seen is not None
    assert (seen.id, seen.state) == (job.id, S.SUBMITTED)
    assert store.unmatched_reports() == []  # and nothing kept for later either
    nobody = dataclasses.replace(unknown, guid="nobody")
    assert await tracker.observe(nobody, source="callback") is None
    assert store.unmatched_reports() == []


async def test_a_job_being_reconciled_takes_the_providers_word(
    store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    (job,) = store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)])
    store.transition(job.id, S.SUBMITTING, detail="submitting", submitted_at=clock.now)
    store.transition(job.id, S.UNCERTAIN, detail="could not tell", expect=S.SUBMITTING)
    store.update_fields(job.id, provider_guid="g9")

    seen = await tracker.observe(transmission("g9", "P"), source="reconcile")
    assert seen is not None
    assert seen.state is S.SUBMITTED
    assert seen.next_poll_at == clock.now  # polled at the next cycle


class RacingStore(Store):
    """A store where another observer moves the job just before our first write."""

    rivals: list[tuple[str, JobState, dict[str, Any]]]

    def transition(self, job_id: str, to: JobState, **kwargs: Any) -> Job:
        if getattr(self, "rivals", None):
            rival_id, rival_to, fields = self.rivals.pop(0)
            super().transition(rival_id, rival_to, detail="a rival observer", **fields)
        return super().transition(job_id, to, **kwargs)


@pytest.fixture
def racing_store(tmp_path: Path, clock: FakeClock) -> Iterator[RacingStore]:
    with RacingStore.open(tmp_path / "racing.sqlite3", clock=clock) as opened:
        assert isinstance(opened, RacingStore)
        yield opened


async def test_a_lost_race_is_decided_again(racing_store: RacingStore, clock: FakeClock) -> None:
    tracker = Tracker(racing_store, POLICY, clock=clock)
    job = submitted_job(racing_store, "g1", now=T0)
    # A poll saw T and wins; our callback said S: it is decided again, from transmitting.
    racing_store.rivals = [(job.id, S.TRANSMITTING, {"provider_status": "T"})]
    done = await tracker.observe(transmission("g1", "S"), source="callback")
    assert done is not None
    assert done.state is S.SENT
    assert [e.to_state for e in racing_store.events(job.id)][-2:] == [S.TRANSMITTING, S.SENT]
    assert len(racing_store.notifications(job.id)) == 1


async def test_a_race_lost_to_the_same_outcome_is_dropped(
    racing_store: RacingStore, clock: FakeClock
) -> None:
    tracker = Tracker(racing_store, POLICY, clock=clock)
    job = submitted_job(racing_store, "g1", now=T0)
    racing_store.rivals = [(job.id, S.SENT, {"provider_status": "S"})]
    seen = await tracker.observe(transmission("g1", "S"), source="poll")
    assert seen is not None
    assert seen.state is S.SENT
    assert [e.detail for e in racing_store.events(job.id)][-1] == "a rival observer"
    assert racing_store.notifications(job.id) == []  # the rival wrote none; we add none


async def test_concurrent_observers_write_one_outcome(store: Store, tracker: Tracker) -> None:
    jobs = [submitted_job(store, f"g{n}", now=T0) for n in range(10)]
    reports = [transmission(f"g{n}", "S") for n in range(10)] * 3
    results = await asyncio.gather(*(tracker.observe(tx, source="poll") for tx in reports))
    assert all(job is not None and job.state is S.SENT for job in results)
    for job in jobs:
        assert len(store.notifications(job.id)) == 1
        assert [e.to_state for e in store.events(job.id)].count(S.SENT) == 1


async def test_a_second_lost_race_drops_the_report(
    racing_store: RacingStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = Tracker(racing_store, POLICY, clock=clock)
    job = submitted_job(racing_store, "g1", now=T0)
    racing_store.rivals = [
        (job.id, S.TRANSMITTING, {"provider_status": "T"}),
        (job.id, S.FAILED, {"provider_status": "E", "provider_error": "U"}),
    ]
    with caplog.at_level(logging.INFO, logger="faxgate.tracker"):
        seen = await tracker.observe(transmission("g1", "S"), source="callback")
    assert seen is not None
    assert seen.state is S.FAILED  # the rival's outcome stands
    assert racing_store.notifications(job.id) == []
    assert any("report dropped" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ a callback before the GUID


async def until_settled(store: Store, job_id: str) -> Job:
    def settled() -> Job | None:
        current = store.get_job(job_id)
        return current if current is not None and current.state in (S.SENT, S.FAILED) else None

    return await wait_for(settled, what=f"job {job_id} settled")


async def test_a_callback_that_beats_the_send_answer_is_applied_once_the_guid_is_known(
    store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    (job,) = store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)], now=T0)
    store.transition(job.id, S.SUBMITTING, detail="submitting", now=T0, submitted_at=T0)
    assert await tracker.observe(transmission("g1", "T"), source="callback") is None
    assert await tracker.observe(transmission("g1", "S"), source="callback") is None

    # The dispatcher records the send's answer, then tells the tracker.
    submitted = store.transition(
        job.id, S.SUBMITTED, detail="submitted", expect=S.SUBMITTING, provider_guid="g1"
    )
    tracker.catch_up(submitted)
    done = await until_settled(store, job.id)
    assert done.state is S.SENT
    assert [n.kind for n in store.notifications(job.id)] == ["report"]
    tracker.catch_up(done)  # nothing is kept any more: applied once
    assert len(store.notifications(job.id)) == 1


async def test_a_callback_whose_guid_lands_while_it_is_looked_up_is_applied_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    class RecordsTheAnswerMeanwhile(Store):
        """The dispatcher commits the GUID just after the callback's first look."""

        looks = 0

        def find_by_provider_guid(self, guid: str) -> Job | None:
            self.looks += 1
            found = super().find_by_provider_guid(guid)
            if self.looks == 1:
                [waiting] = self.jobs_in_states([S.SUBMITTING])
                self.transition(waiting.id, S.SUBMITTED, detail="submitted", provider_guid=guid)
            return found

    store = RecordsTheAnswerMeanwhile.open(tmp_path / "faxgate.sqlite3", clock=clock)
    try:
        (job,) = store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)])
        store.transition(job.id, S.SUBMITTING, detail="submitting")
        tracker = Tracker(store, POLICY, clock=clock)
        done = await tracker.observe(transmission("g1", "S"), source="callback")
        assert done is not None
        assert done.state is S.SENT
    finally:
        store.close()


async def test_kept_reports_expire_and_polls_are_never_kept(
    store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    assert await tracker.observe(transmission("g-old", "S"), source="callback") is None
    assert await tracker.observe(transmission("g-poll", "S"), source="poll") is None
    clock.now += UNMATCHED_KEEP + timedelta(minutes=1)
    assert await tracker.observe(transmission("g-new", "S"), source="callback") is None
    for guid in ("g-old", "g-poll"):  # the send's answer comes, but too late for the report
        job = submitted_job(store, guid, now=clock.now)
        tracker.catch_up(job)
        await asyncio.gather(*tracker._catching_up)  # whatever catching up it began, done
        current = store.get_job(job.id)
        assert current is not None
        assert current.state is S.SUBMITTED
    late = submitted_job(store, "g-new", now=clock.now)
    tracker.catch_up(late)
    assert (await until_settled(store, late.id)).state is S.SENT


async def test_a_kept_report_outlives_a_restart_and_is_evidence_meanwhile(
    store: Store, clock: FakeClock
) -> None:
    woken: list[bool] = []
    before = Tracker(store, POLICY, clock=clock, on_unmatched=lambda: woken.append(True))
    assert await before.observe(transmission("g1", "S"), source="callback") is None
    assert woken == [True]  # the dispatcher is told: a job being reconciled may be this
    after = Tracker(store, POLICY, clock=clock)  # faxgate restarted
    assert [tx.guid for tx in await after.unmatched()] == ["g1"]
    job = submitted_job(store, "g1", now=clock.now)
    after.catch_up(job)
    assert (await until_settled(store, job.id)).state is S.SENT
    assert await after.unmatched() == []  # applied: no longer kept


async def test_a_fax_the_provider_removed_ends_presumed_sent_with_one_report(
    store: Store, tracker: Tracker, clock: FakeClock, progress: list[Job]
) -> None:
    job = submitted_job(store, "g1", now=clock.now)
    before = outcome_count("presumed_sent", "removed")
    presumed = await tracker.presume_sent(job, "the provider answered 404 for it")
    assert presumed is not None
    assert presumed.state is S.PRESUMED_SENT
    assert presumed.finished_at == clock.now
    assert presumed.next_poll_at is None
    assert presumed.reason is not None
    assert presumed.reason.startswith("sent, as far as")
    [report] = store.notifications(job.id)
    assert report.payload["state"] == "presumed_sent"
    assert store.events(job.id)[-1].data["evidence"] == "the provider answered 404 for it"
    assert outcome_count("presumed_sent", "removed") == before + 1
    assert progress[-1].state is S.PRESUMED_SENT
    # A job that moved meanwhile (its callback came) is left alone.
    other = submitted_job(store, "g2", now=clock.now)
    await tracker.observe(transmission("g2", "S"), source="callback")
    assert await tracker.presume_sent(other, "404") is None
    assert store.get_job(other.id).state is S.SENT  # type: ignore[union-attr]


async def test_a_late_sent_callback_confirms_a_presumed_fax_without_a_second_report(
    store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    job = submitted_job(store, "g1", now=clock.now)
    presumed = await tracker.presume_sent(job, "404")
    assert presumed is not None
    clock.now += timedelta(hours=3)
    confirmed = await tracker.observe(transmission("g1", "S"), source="callback")
    assert confirmed is not None
    assert confirmed.state is S.SENT
    assert confirmed.finished_at == presumed.finished_at
    assert len(store.notifications(job.id)) == 1
    last = store.events(job.id)[-1]
    assert (last.from_state, last.to_state, last.data["late"]) == (S.PRESUMED_SENT, S.SENT, True)


async def test_a_late_error_callback_fails_a_presumed_fax_and_tells_its_owner(
    store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    job = submitted_job(store, "g1", now=clock.now)
    await tracker.presume_sent(job, "404")
    clock.now += timedelta(hours=3)
    failed = await tracker.observe(transmission("g1", "E", "B"), source="callback")
    assert failed is not None
    assert failed.state is S.FAILED  # busy, tries left: still not called again on its own
    assert failed.attempt == 1
    reports = store.notifications(job.id)
    assert [r.payload["state"] for r in reports] == ["presumed_sent", "failed"]
    assert "not sent again" in reports[-1].payload["reason"]
    # The same late news again changes nothing.
    again = await tracker.observe(transmission("g1", "E", "B"), source="callback")
    assert again is not None
    assert again.state is S.FAILED
    assert len(store.notifications(job.id)) == 2


async def test_a_sending_rule_sets_its_numbers_busy_retries(store: Store, clock: FakeClock) -> None:
    from faxgate.domain.sending_rules import Match, Rule
    from faxgate.sending.policy import SendingPolicy

    stubborn = Rule("stubborn", Match(numbers=("+1415555012",)), busy_retries=0)
    policy = SendingPolicy(rules=(stubborn,))
    tracker = Tracker(store, POLICY, clock=clock, retry_for=policy.retries)
    ruled = submitted_job(store, "r1", now=T0)
    other = submitted_job(store, "o1", to="+12125550123", now=T0)

    failed = await tracker.observe(transmission("r1", "E", "B"), source="callback")
    assert failed is not None
    assert failed.state is S.FAILED  # the rule allows no call again
    again = await tracker.observe(transmission("o1", "E", "B"), source="callback")
    assert again is not None
    assert again.state is S.QUEUED  # [retry]'s two calls again
    assert policy.retries(ruled, POLICY).busy.extra_tries == 0
    assert policy.retries(other, POLICY) is POLICY


async def test_a_callback_kept_by_another_instance_is_applied_by_the_one_that_sent(
    store: Store, clock: FakeClock
) -> None:
    """Instances sharing a store: the callback reached one, the send's answer another."""
    sender = Tracker(store, POLICY, clock=clock, shared=True)  # started before the callback
    receiver = Tracker(store, POLICY, clock=clock, shared=True)
    assert await receiver.observe(transmission("g1", "S"), source="callback") is None
    job = submitted_job(store, "g1", now=clock.now)
    sender.catch_up(job)
    assert (await until_settled(store, job.id)).state is S.SENT
    assert len(store.notifications(job.id)) == 1
