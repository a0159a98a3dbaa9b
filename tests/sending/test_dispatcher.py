"""The dispatcher against the sandbox over real HTTP, with a real SQLite store and spool.

After each scenario the sandbox's inspection is the judge: every fax reached the provider
exactly once (or, where the dispatcher could not tell, was never sent a second time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate.clock import utc_now
from faxgate.domain.codes import StatusCode
from faxgate.domain.jobs import ACTIVE_STATES, Intake, Job, JobState
from faxgate.domain.provider import FaxReport, OutgoingFax, RateLimited, Refused
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.models import Transmission, Upload
from faxgate.hellofax.provider import HelloFaxProvider
from faxgate.hellofax.sandbox import FaultSettings, InspectedTransmission, Sandbox
from faxgate.sending.dispatcher import Dispatcher, DispatchReport
from faxgate.sending.policy import SendingPolicy
from faxgate.settings import DispatchSettings, PollingSettings
from faxgate.store import NewDocument, NewJob, Share, Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document, sandbox_client, tls_context, wait_for

S = JobState
LETTER = pdf_document(1)
REPORT = pdf_document(2)


class ShiftedClock:
    """Real time plus an offset the test moves forward: pauses and backoffs end on demand."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


def dispatcher(
    store: Store,
    client: HelloFaxClient,
    clock: ShiftedClock | None = None,
    *,
    max_in_flight: int = 200,
    first: float = 10.0,
    cap: float = 60.0,
    progress: list[Job] | None = None,
    removes: bool = True,
    kept: list[Transmission] | None = None,
    callbacks: bool = False,
    retry_scale: float = 1.0,
    share: Share | None = None,
    policy: SendingPolicy | None = None,
) -> Dispatcher:
    """`removes`: the provider removes a fax once sent; `kept`: callbacks kept for GUIDs
    no job holds (the tracker's), when the test gives some."""

    async def unmatched() -> list[FaxReport]:
        return [tx.report() for tx in kept or []]

    return Dispatcher(
        store,
        HelloFaxProvider(client),
        DispatchSettings(
            max_in_flight=max_in_flight,
            backoff_first=timedelta(seconds=first),
            backoff_max=timedelta(seconds=cap),
        ),
        polling=PollingSettings(),
        clock=clock or utc_now,
        rand=lambda: 0.5,
        on_progress=None if progress is None else progress.append,
        provider_removes=removes,
        unmatched=None if kept is None else unmatched,
        callbacks_expected=callbacks,
        callback_retry_scale=retry_scale,
        share=share,
        policy=policy,
    )


def number(index: int) -> str:
    """A distinct US number the sandbox sends successfully (no special ending)."""
    return f"+1415555{2000 + index:04d}"


def queue(
    store: Store,
    spool: Spool,
    numbers: list[str],
    *,
    document: bytes = LETTER,
    from_line: str | None = None,
) -> list[Job]:
    new_jobs = [
        NewJob(
            to_number=to,
            intake=Intake.CLI,
            documents=[
                NewDocument(
                    "letter.pdf", spool.store_bytes(document, suffix=".pdf"), "application/pdf"
                )
            ],
            from_line=from_line,
        )
        for to in numbers
    ]
    return store.create_jobs(new_jobs)


def state(store: Store, job: Job) -> JobState:
    current = store.get_job(job.id)
    assert current is not None
    return current.state


def fresh(store: Store, job: Job) -> Job:
    current = store.get_job(job.id)
    assert current is not None
    return current


def busy_again(store: Store, job: Job, guid: str | None, **fields: Any) -> None:
    """The job's call ended busy: queued to call again (its second attempt), the call's
    GUID kept only in the event, as the tracker does; `fields` set besides."""
    store.transition(
        job.id,
        S.QUEUED,
        detail="the line was busy; calling again",
        expect=S.SUBMITTED,
        data={"guid": guid, "status": "E", "error": "B"},
        attempt=2,
        provider_guid=None,
        provider_status=None,
        **fields,
    )


def outbound(sandbox: Sandbox) -> list[InspectedTransmission]:
    return [item for item in sandbox.inspect() if not item.is_inbound]


def assert_each_sent_once(sandbox: Sandbox, store: Store, jobs: list[Job]) -> None:
    """Every job reached the provider exactly once, as the transmission its GUID names."""
    sent = outbound(sandbox)
    assert len(sent) == len(jobs)
    assert sandbox.duplicates() == []
    by_guid = {item.guid: item for item in sent}
    for job in jobs:
        current = fresh(store, job)
        assert current.provider_guid in by_guid, current
        assert by_guid[current.provider_guid].to == job.to_number.removeprefix("+")
        assert current.attempt == 1


def in_flight(store: Store) -> int:
    counts = store.count_by_state()
    return sum(counts[s] for s in ACTIVE_STATES)


async def put_in_submitting(store: Store, job: Job, at: datetime) -> Job:
    """What a crash between committing `submitting` and the answer leaves behind."""
    return await asyncio.to_thread(
        store.transition,
        job.id,
        S.SUBMITTING,
        detail="submitting (before a crash)",
        expect=S.QUEUED,
        now=at,
        submitted_at=at,
    )


async def send_directly(client: HelloFaxClient, store: Store, job: Job) -> Transmission:
    """The fax reaches the provider, as the lost request would have done."""
    uploads = [Upload(doc.name, doc.path, doc.content_type) for doc in store.documents(job.id)]
    (tx,) = await client.send(job.to_number.removeprefix("+"), uploads)
    return tx


# ---------------------------------------------------------------------------- the plain path


async def test_queued_jobs_are_submitted_exactly_once(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(10)])
    progress: list[Job] = []
    report = await dispatcher(store, client, progress=progress).dispatch_once()

    assert (report.picked, report.submitted, report.capacity) == (10, 10, 200)
    assert_each_sent_once(sandbox, store, jobs)
    for job in jobs:
        current = fresh(store, job)
        assert current.state is S.SUBMITTED
        assert current.provider_status == "P"
        assert current.submitted_at is not None
        assert current.next_poll_at is not None
        assert current.next_poll_at - current.updated_at == PollingSettings().first_interval
        assert current.poll_interval == PollingSettings().first_interval
        moves = [(e.from_state, e.to_state) for e in store.events(job.id)]
        assert moves == [(None, S.QUEUED), (S.QUEUED, S.SUBMITTING), (S.SUBMITTING, S.SUBMITTED)]
    assert Counter(job.state for job in progress) == {S.SUBMITTING: 10, S.SUBMITTED: 10}

    again = await dispatcher(store, client).dispatch_once()
    assert (again.picked, again.submitted) == (0, 0)
    assert len(outbound(sandbox)) == 10


class WatchingTransport(httpx.AsyncBaseTransport):
    """Notes the job's state in the store at the moment each POST leaves."""

    def __init__(self, store: Store, job_id: str) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=tls_context())
        self._store = store
        self._job_id = job_id
        self.seen: list[tuple[JobState, datetime | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            job = self._store.get_job(self._job_id)
            assert job is not None
            self.seen.append((job.state, job.submitted_at))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_submitting_is_committed_before_the_request_leaves(
    sandbox: Sandbox, store: Store, spool: Spool
) -> None:
    (job,) = queue(store, spool, [number(1)])
    watching = WatchingTransport(store, job.id)
    sandbox.faults = FaultSettings(delay=0.3, delay_only_for_sends=True)
    async with sandbox_client(sandbox, transport=watching) as client:
        cycle = asyncio.create_task(dispatcher(store, client).dispatch_once())
        (accepted,) = await wait_for(lambda: outbound(sandbox), what="the sandbox to take the fax")
        # The provider has the fax, its answer is still on the way: the store says so.
        assert not cycle.done()
        assert state(store, job) is S.SUBMITTING
        report = await cycle

    assert report.submitted == 1
    assert len(watching.seen) == 1
    seen_state, seen_submitted_at = watching.seen[0]
    assert seen_state is S.SUBMITTING
    assert seen_submitted_at is not None
    assert fresh(store, job).provider_guid == accepted.guid


async def test_a_job_cancelled_meanwhile_is_skipped(
    sandbox: Sandbox,
    client: HelloFaxClient,
    store: Store,
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept, cancelled = queue(store, spool, [number(1), number(2)])
    due_jobs = store.due_jobs

    def due_then_cancel(now: datetime, limit: int, *, per_number: int | None) -> list[Job]:
        jobs = due_jobs(now, limit, per_number=per_number)
        store.transition(cancelled.id, S.CANCELLED, detail="cancelled by a person", expect=S.QUEUED)
        return jobs

    monkeypatch.setattr(store, "due_jobs", due_then_cancel)
    report = await dispatcher(store, client).dispatch_once()

    assert (report.submitted, report.skipped) == (1, 1)
    assert state(store, cancelled) is S.CANCELLED
    assert_each_sent_once(sandbox, store, [kept])


# ---------------------------------------------------------------------------- refusals


async def test_a_refused_fax_fails_with_the_providers_message_and_one_report(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    (refused,) = queue(store, spool, [number(1)], from_line="14155559999")
    (fine,) = queue(store, spool, [number(2)])
    report = await dispatcher(store, client).dispatch_once()

    assert (report.failed, report.submitted) == (1, 1)
    current = fresh(store, refused)
    assert current.state is S.FAILED
    assert current.reason is not None
    assert "is not one of this account's fax lines" in current.reason
    (note,) = store.notifications(refused.id)
    assert note.kind == "report"
    assert note.payload["state"] == "failed"
    assert note.payload["reason"] == current.reason
    assert note.payload["attempts"] == 1
    assert note.payload["provider_guid"] is None
    # One refusal concerns that fax only: the other one went.
    assert_each_sent_once(sandbox, store, [fine])


async def test_a_document_missing_from_the_spool_fails_the_job_before_any_request(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    (job,) = queue(store, spool, [number(1)])
    store.documents(job.id)[0].path.unlink()
    report = await dispatcher(store, client).dispatch_once()

    assert report.failed == 1
    current = fresh(store, job)
    assert current.state is S.FAILED
    assert current.reason is not None
    assert "letter.pdf" in current.reason
    assert "no longer in the spool" in current.reason
    assert [e.to_state for e in store.events(job.id)] == [S.QUEUED, S.FAILED]
    (note,) = store.notifications(job.id)
    assert note.payload["state"] == "failed"
    assert outbound(sandbox) == []


# ---------------------------------------------------------------------------- provider faults


async def test_a_5xx_storm_is_retried_with_growing_backoff_and_each_fax_sent_once(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(4)])
    the_dispatcher = dispatcher(store, client, clock, first=10.0, cap=60.0)
    sandbox.faults = FaultSettings(error_rate=1.0, errors_only_for_sends=True)

    storm = await the_dispatcher.dispatch_once()
    assert (storm.requeued, storm.submitted) == (4, 0)
    for job in jobs:
        current = fresh(store, job)
        assert current.state is S.QUEUED
        assert current.attempt == 1
        assert current.not_before is not None
        assert current.not_before > clock()
        last = store.events(job.id)[-1]
        assert last.data["submit_failures"] == 1
        assert last.data["retry_in"] == pytest.approx(15.0)  # 10 s + half of the next 10 s
    # Several failures in a row: the provider is taken to be down; nothing goes meanwhile.
    assert the_dispatcher.paused_until is not None
    paused = await the_dispatcher.dispatch_once()
    assert paused.paused
    assert paused.picked == 0

    # After the pause one fax tries the water: still failing, it waits longer.
    clock.advance(timedelta(minutes=5))
    probe = await the_dispatcher.dispatch_once()
    assert (probe.limit, probe.requeued) == (1, 1)
    retried = [job for job in jobs if store.events(job.id)[-1].data.get("submit_failures") == 2]
    assert len(retried) == 1
    assert store.events(retried[0].id)[-1].data["retry_in"] == pytest.approx(25.0)

    sandbox.faults = FaultSettings()
    clock.advance(timedelta(minutes=5))
    first = await the_dispatcher.dispatch_once()
    assert (first.limit, first.submitted) == (1, 1)
    rest = await the_dispatcher.dispatch_once()
    assert rest.submitted == 3
    assert_each_sent_once(sandbox, store, jobs)


async def test_a_random_5xx_storm_under_run_sends_every_fax_once(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(8)])
    sandbox.faults = FaultSettings(error_rate=0.5, seed=11, errors_only_for_sends=True)
    the_dispatcher = dispatcher(store, client, first=0.01, cap=0.05)
    running = asyncio.create_task(the_dispatcher.run())
    try:
        await wait_for(
            lambda: all(state(store, job) is S.SUBMITTED for job in jobs),
            timeout=4,  # well under the idle check: retries are woken for, not found
            what="every job submitted",
        )
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    failures = sum(
        1 for job in jobs for event in store.events(job.id) if "submit_failures" in event.data
    )
    assert failures > 0  # the storm did strike
    assert_each_sent_once(sandbox, store, jobs)


async def test_a_429_pauses_sends_until_a_fax_leaves_the_provider(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(5)])
    the_dispatcher = dispatcher(store, client, clock, first=30.0, cap=120.0)
    sandbox.faults = FaultSettings(rate_limit_next=2)

    limited = await the_dispatcher.dispatch_once()
    assert limited.rate_limited
    assert (limited.submitted, limited.requeued) == (3, 2)
    waiting = [job for job in jobs if state(store, job) is S.QUEUED]
    assert len(waiting) == 2
    for job in waiting:
        assert fresh(store, job).attempt == 1  # refused, not called
        assert store.events(job.id)[-1].data["rate_limited"] is True

    paused = await the_dispatcher.dispatch_once()
    assert paused.paused
    assert paused.picked == 0
    assert len(outbound(sandbox)) == 3

    # A fax leaves the provider's hands (the tracker would record it): one is tried first.
    gone = next(job for job in jobs if state(store, job) is S.SUBMITTED)
    store.transition(gone.id, S.SENT, detail="sent", expect=S.SUBMITTED)
    probe = await the_dispatcher.dispatch_once()
    assert (probe.limit, probe.submitted) == (1, 1)
    opened = await the_dispatcher.dispatch_once()
    assert opened.submitted == 1
    assert_each_sent_once(sandbox, store, jobs)


async def test_a_429_pause_ends_after_its_time_even_if_nothing_leaves(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    jobs = queue(store, spool, [number(1)])
    the_dispatcher = dispatcher(store, client, clock, first=30.0, cap=120.0)
    sandbox.faults = FaultSettings(rate_limit_next=1)
    assert (await the_dispatcher.dispatch_once()).rate_limited
    assert (await the_dispatcher.dispatch_once()).paused
    clock.advance(timedelta(seconds=46))  # the first pause: 30 s + half of the next 30 s
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    assert_each_sent_once(sandbox, store, jobs)


# ---------------------------------------------------------------------------- ambiguity


async def test_a_connection_dropped_after_the_upload_is_reconciled_not_resent(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(3)])
    # Still pending when the list is read at once, as a real fax is for many seconds.
    sandbox.faults = FaultSettings(drop_after_upload_next=3, stall_faxes=True)
    the_dispatcher = dispatcher(store, client)
    report = await the_dispatcher.dispatch_once()

    assert (report.ambiguous, report.reconciled, report.submitted) == (3, 3, 0)
    assert_each_sent_once(sandbox, store, jobs)
    for job in jobs:
        assert store.events(job.id)[-1].data["reconciled"] == "found"
    assert (await the_dispatcher.dispatch_once()).picked == 0
    assert len(outbound(sandbox)) == 3


async def test_a_transmission_another_job_holds_is_not_taken_for_the_lost_one(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    # Two calls at once to one number: only without one call at a time per number.
    the_dispatcher = dispatcher(store, client, policy=SendingPolicy(per_number=None))
    (earlier,) = queue(store, spool, [number(1)])
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    (lost,) = queue(store, spool, [number(1)])  # the same document to the same number
    sandbox.faults = FaultSettings(drop_after_upload_next=1)

    report = await the_dispatcher.dispatch_once()

    assert (report.ambiguous, report.reconciled) == (1, 1)
    guids = {fresh(store, earlier).provider_guid, fresh(store, lost).provider_guid}
    assert guids == {item.guid for item in outbound(sandbox)}
    assert len(guids) == 2


async def test_the_transmission_of_an_earlier_call_is_not_taken_for_the_lost_one(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    the_dispatcher = dispatcher(store, client)
    (job,) = queue(store, spool, [number(1)])
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    first_guid = fresh(store, job).provider_guid
    # The line was busy: called again, the old GUID kept only in the event (as the tracker does).
    busy_again(store, job, first_guid)
    sandbox.faults = FaultSettings(drop_after_upload_next=1)

    report = await the_dispatcher.dispatch_once()

    assert (report.ambiguous, report.reconciled) == (1, 1)
    (second,) = [item for item in outbound(sandbox) if item.guid != first_guid]
    current = fresh(store, job)
    assert current.provider_guid == second.guid
    assert current.attempt == 2


async def test_another_jobs_earlier_call_is_not_taken_for_the_lost_one(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    # A later fax to the number goes while the busy one waits: no one call at a time.
    the_dispatcher = dispatcher(store, client, policy=SendingPolicy(per_number=None))
    (busy,) = queue(store, spool, [number(1)])
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    busy_guid = fresh(store, busy).provider_guid
    # That call ended busy: the job waits to call again, its GUID only in its events.
    busy_again(store, busy, busy_guid, not_before=utc_now() + timedelta(hours=1))
    (lost,) = queue(store, spool, [number(1)])  # the same letter to the same number
    # A gateway error: the provider never handled the request.
    sandbox.faults = FaultSettings(error_rate=1.0, error_statuses=[502], errors_only_for_sends=True)

    report = await the_dispatcher.dispatch_once()

    assert report.ambiguous == 1
    assert report.reconciled == 0  # the busy call is the other job's, never this one's
    assert fresh(store, lost).provider_guid is None
    assert state(store, lost) is S.SUBMITTING  # left for the window to tell
    assert store.call_owner(busy_guid or "") == busy.id


async def gateway_error(sandbox: Sandbox, the_dispatcher: Dispatcher) -> DispatchReport:
    """One cycle whose sends get a gateway error (504): the request may have reached the
    provider (here it did not). The sandbox answers as usual again afterwards."""
    sandbox.faults = FaultSettings(error_rate=1.0, error_statuses=[504], errors_only_for_sends=True)
    report = await the_dispatcher.dispatch_once()
    sandbox.faults = FaultSettings()
    return report


@pytest.mark.parametrize("removal", ["nothing"])  # only then does absence prove anything
async def test_an_ambiguous_request_the_provider_never_took_waits_out_the_window(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)])
    the_dispatcher = dispatcher(store, client, clock, removes=False)
    report = await gateway_error(sandbox, the_dispatcher)
    assert (report.ambiguous, report.unresolved) == (1, 1)
    assert state(store, job) is S.SUBMITTING

    # Not in the list, but the provider might still record it: not sent again yet.
    clock.advance(timedelta(minutes=1))
    early = await the_dispatcher.dispatch_once()
    assert early.unresolved == 1
    assert early.picked == 0
    assert state(store, job) is S.SUBMITTING
    assert outbound(sandbox) == []

    # Once the window has closed with nothing in it, sending is safe.
    clock.advance(timedelta(minutes=10))
    late = await the_dispatcher.dispatch_once()
    assert (late.requeued, late.submitted) == (1, 1)
    assert_each_sent_once(sandbox, store, [job])


async def test_absence_from_the_list_of_a_provider_that_removes_sent_faxes_is_no_proof(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)])
    the_dispatcher = dispatcher(store, client, clock, kept=[])
    assert (await gateway_error(sandbox, the_dispatcher)).unresolved == 1

    # The window closes with nothing listed and no callback kept: it may have been
    # taken, sent and removed meanwhile. Uncertain, and never sent again on a guess.
    clock.advance(timedelta(minutes=11))
    late = await the_dispatcher.dispatch_once()
    assert (late.uncertain, late.requeued, late.submitted) == (1, 0, 0)
    assert outbound(sandbox) == []
    (note,) = store.notifications(job.id)
    assert "removes faxes once they are sent" in note.payload["reason"]


async def test_with_callbacks_reaching_faxgate_all_along_absence_is_proof_again(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)])
    # Had the provider taken it, its callback (posted before the fax is removed) would
    # have come to this running faxgate and been kept: none came.
    the_dispatcher = dispatcher(store, client, clock, kept=[], callbacks=True)
    assert (await gateway_error(sandbox, the_dispatcher)).unresolved == 1
    clock.advance(timedelta(minutes=11))
    late = await the_dispatcher.dispatch_once()
    assert (late.requeued, late.submitted, late.uncertain) == (1, 1, 0)
    assert_each_sent_once(sandbox, store, [job])


async def test_after_a_short_downtime_absence_proves_it_once_a_callback_retry_had_its_turn(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    long_ago, just_before = queue(store, spool, [number(1), number(2)])
    # Both left in submitting by a run that stopped; this one starts now.
    await put_in_submitting(store, long_ago, clock() - timedelta(hours=40))
    await put_in_submitting(store, just_before, clock() - timedelta(minutes=11))
    the_dispatcher = dispatcher(store, client, clock, kept=[], callbacks=True)

    await the_dispatcher.recover()
    # Down longer than the provider retries callbacks: nothing can come; a person decides.
    assert state(store, long_ago) is S.UNCERTAIN
    # Down 11 minutes: a callback posted meanwhile is tried again within 15 minutes.
    assert state(store, just_before) is S.SUBMITTING
    clock.advance(timedelta(minutes=10))
    await the_dispatcher.dispatch_once()
    assert state(store, just_before) is S.SUBMITTING
    clock.advance(timedelta(minutes=6))
    report = await the_dispatcher.dispatch_once()
    assert (report.requeued, report.submitted) == (1, 1)
    assert_each_sent_once(sandbox, store, [just_before])


async def test_a_kept_callback_settles_a_job_whose_fax_was_sent_and_removed(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)], document=REPORT)
    await put_in_submitting(store, job, clock())
    tx = await send_directly(client, store, job)
    await wait_for(
        lambda: [item for item in outbound(sandbox) if item.removed], what="the fax removed"
    )
    # Its callback came for a GUID no job held, and was kept.
    callback = Transmission.model_validate(
        {**tx.model_dump(by_alias=True), "StatusCode": "S", "NumPagesBilled": 2}
    )
    progress: list[Job] = []
    the_dispatcher = dispatcher(store, client, clock, kept=[callback], progress=progress)

    await the_dispatcher.recover()

    current = fresh(store, job)
    assert current.state is S.SUBMITTED  # the tracker's catch-up applies the S next
    assert current.provider_guid == tx.guid
    assert [moved.provider_guid for moved in progress] == [tx.guid]
    assert store.events(job.id)[-1].data["by"] == "callback"
    assert_each_sent_once(sandbox, store, [job])


async def test_a_kept_callback_settles_an_uncertain_job(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)], document=REPORT)
    await put_in_submitting(store, job, clock() - timedelta(minutes=11))
    store.transition(job.id, S.UNCERTAIN, detail="could not tell", expect=S.SUBMITTING)
    tx = await send_directly(client, store, job)  # what the lost request did
    kept: list[Transmission] = []
    the_dispatcher = dispatcher(store, client, clock, kept=kept)
    await the_dispatcher.dispatch_once()
    assert state(store, job) is S.UNCERTAIN  # no evidence yet

    # Backdated as the provider would have stamped it, within the job's match window.
    stamp = str(int((clock() - timedelta(minutes=11)).timestamp()))
    kept.append(
        Transmission.model_validate(
            {**tx.model_dump(by_alias=True), "StatusCode": "S", "NumPagesBilled": 2}
            | {"CreatedAt": stamp}
        )
    )
    the_dispatcher.evidence_arrived()
    report = await the_dispatcher.dispatch_once()
    assert report.reconciled == 1
    current = fresh(store, job)
    assert (current.state, current.provider_guid) == (S.SUBMITTED, tx.guid)


# The fax stays listed once sent: removed, a loaded machine's slower test could find it gone.
@pytest.mark.parametrize("removal", ["nothing"])
async def test_a_list_that_cannot_be_read_leaves_the_job_submitting_until_it_can(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)])
    await put_in_submitting(store, job, clock())
    tx = await send_directly(client, store, job)
    sandbox.faults = FaultSettings(error_rate=1.0, error_statuses=[500])
    the_dispatcher = dispatcher(store, client, clock)

    await the_dispatcher.recover()
    assert state(store, job) is S.SUBMITTING
    sandbox.faults = FaultSettings()
    soon = await the_dispatcher.dispatch_once()  # its next look is not due yet
    assert soon.reconciled == 0
    assert state(store, job) is S.SUBMITTING

    clock.advance(timedelta(minutes=1))
    report = await the_dispatcher.dispatch_once()
    assert report.reconciled == 1
    assert fresh(store, job).provider_guid == tx.guid
    assert_each_sent_once(sandbox, store, [job])


@pytest.mark.parametrize("removal", ["nothing"])  # adopting a fax still listed as sent
async def test_recover_adopts_a_fax_that_reached_the_provider(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    (job,) = queue(store, spool, [number(1)], document=REPORT)
    await put_in_submitting(store, job, clock())
    tx = await send_directly(client, store, job)
    await wait_for(
        lambda: [item for item in outbound(sandbox) if item.status == "S"],
        what="the fax to be sent",
    )

    await dispatcher(store, client, clock).recover()

    current = fresh(store, job)
    assert current.state is S.SUBMITTED
    assert current.provider_guid == tx.guid
    assert current.provider_status == StatusCode.SENT.value
    assert current.next_poll_at is not None
    assert current.next_poll_at <= clock()
    assert_each_sent_once(sandbox, store, [job])


@pytest.mark.parametrize("removal", ["nothing"])  # only then does absence prove anything
async def test_recover_requeues_a_fax_that_never_reached_the_provider(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    long_ago, just_now = queue(store, spool, [number(1), number(2)])
    await put_in_submitting(store, long_ago, clock() - timedelta(minutes=11))
    await put_in_submitting(store, just_now, clock())
    the_dispatcher = dispatcher(store, client, clock, removes=False)

    await the_dispatcher.recover()
    assert state(store, long_ago) is S.QUEUED
    assert store.events(long_ago.id)[-1].data["reconciled"] == "not_there"
    # The other one's request might still be recorded by the provider: it waits.
    assert state(store, just_now) is S.SUBMITTING

    report = await the_dispatcher.dispatch_once()
    assert report.submitted == 1
    assert_each_sent_once(sandbox, store, [long_ago])


async def test_two_indistinguishable_ambiguous_faxes_become_uncertain_not_a_guess(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool, clock: ShiftedClock
) -> None:
    jobs = queue(store, spool, [number(1), number(1)], document=REPORT)
    sandbox.faults = FaultSettings(drop_after_upload_next=2)
    # Both at once to one number: only without one call at a time per number.
    the_dispatcher = dispatcher(store, client, clock, policy=SendingPolicy(per_number=None))
    progress: list[DispatchReport] = []

    async def both_uncertain() -> bool:
        clock.advance(timedelta(seconds=30))  # past each next look
        progress.append(await the_dispatcher.dispatch_once())
        return all(state(store, job) is S.UNCERTAIN for job in jobs)

    await wait_for(both_uncertain, what="both jobs uncertain")

    assert progress[0].ambiguous == 2
    assert sum(report.submitted + report.reconciled for report in progress) == 0
    sent = outbound(sandbox)
    assert len(sent) == 2  # the two requests, and never a third
    assert {item.to for item in sent} == {number(1).removeprefix("+")}
    for job in jobs:
        current = fresh(store, job)
        assert current.provider_guid is None
        assert current.attempt == 1
        (note,) = store.notifications(job.id)
        assert note.payload["state"] == "uncertain"
        assert f"faxgate retry {job.id}" in note.payload["reason"]
        assert "not sent again" in note.payload["reason"]


# ---------------------------------------------------------------------------- capacity


async def test_never_more_in_flight_than_the_limit(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    jobs = queue(store, spool, [number(i) for i in range(12)])
    the_dispatcher = dispatcher(store, client, max_in_flight=5)
    peaks = {"store": 0, "provider": 0}

    async def watch() -> None:
        while True:
            peaks["store"] = max(peaks["store"], in_flight(store))
            at_provider = [item for item in outbound(sandbox) if item.status in ("P", "T")]
            peaks["provider"] = max(peaks["provider"], len(at_provider))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        sandbox.faults = FaultSettings(stall_faxes=True)
        first = await the_dispatcher.dispatch_once()
        assert (first.capacity, first.submitted) == (5, 5)
        full = await the_dispatcher.dispatch_once()
        assert (full.capacity, full.picked) == (0, 0)
        assert len(outbound(sandbox)) == 5
        sandbox.faults = FaultSettings()

        # The rest go as the first ones finish (settled here as the tracker would).
        while any(state(store, job) is not S.SENT for job in jobs):
            pending = [job for job in jobs if state(store, job) is S.SUBMITTED]
            for job in pending[:2]:
                await settle(sandbox, store, job)
            report = await the_dispatcher.dispatch_once()
            assert report.submitted <= 2
            assert in_flight(store) <= 5
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    assert peaks == {"store": 5, "provider": 5}
    assert_each_sent_once(sandbox, store, jobs)


async def settle(sandbox: Sandbox, store: Store, job: Job) -> None:
    guid = fresh(store, job).provider_guid
    assert guid is not None

    def sent() -> bool:  # by the inspection: the API no longer shows a sent fax
        return any(item.guid == guid and item.status == "S" for item in outbound(sandbox))

    await wait_for(sent, what=f"transmission {guid} sent")
    store.transition(job.id, S.SENT, detail="sent", expect=S.SUBMITTED)


class _RateLimitedAroundASuccess:
    """A provider that answers a cycle's sends in order: 429, success, 429."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, fax: OutgoingFax) -> FaxReport:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(0.01 * call)  # the answers come back in the order of the calls
        if call in (1, 3):
            raise RateLimited("Please wait.", status=429, endpoint="send")
        return Transmission.model_validate(
            {"Guid": "a" * 40, "To": fax.to, "StatusCode": "P"}
        ).report()


async def test_a_429_after_a_success_in_the_same_cycle_still_pauses_sends(
    store: Store, spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = queue(store, spool, [number(n) for n in range(3)])
    the_dispatcher = Dispatcher(
        store,
        _RateLimitedAroundASuccess(),  # type: ignore[arg-type]
        DispatchSettings(),
        polling=PollingSettings(),
        rand=lambda: 0.5,
    )

    with caplog.at_level(logging.WARNING, logger="faxgate.dispatcher"):
        report = await the_dispatcher.dispatch_once()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert (report.submitted, report.requeued, report.rate_limited) == (1, 2, True)
    assert sorted(state(store, job).value for job in jobs) == ["queued", "queued", "submitted"]
    assert the_dispatcher.paused_until is not None


class _PaymentRequired:
    """A v3 account whose plan is not paid: every send refused with 402."""

    calls = 0

    async def send(self, fax: OutgoingFax) -> FaxReport:
        self.calls += 1
        raise Refused("payment required (402 payment_required)", status=402, endpoint="send")


async def test_a_refusal_of_the_account_pauses_sends_instead_of_failing_each_fax(
    store: Store, spool: Spool
) -> None:
    jobs = queue(store, spool, [number(n) for n in range(3)])
    provider = _PaymentRequired()
    the_dispatcher = Dispatcher(
        store,
        provider,  # type: ignore[arg-type]
        DispatchSettings(),
        polling=PollingSettings(),
        rand=lambda: 0.5,
    )
    report = await the_dispatcher.dispatch_once()
    assert report.failed == 0
    assert all(state(store, job) is S.QUEUED for job in jobs)
    assert the_dispatcher.paused_until is not None
    assert provider.calls >= 1
