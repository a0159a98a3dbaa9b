"""The dispatcher: hands queued jobs to the provider, and never one fax twice by accident.

One cycle (`dispatch_once`):
1. jobs left in `submitting` whose fate is unknown (an ambiguous answer earlier, or a
   crash) are reconciled against the provider's transmission list, when their next look
   is due;
2. unless sends are paused, as many due jobs as the provider has room for are taken,
   oldest first: `max_in_flight` minus the jobs in submitting, submitted or transmitting;
3. they are submitted a few at a time (CONCURRENCY), each in its own order of steps:
   documents checked, `submitting` committed with `submitted_at` BEFORE the request
   leaves, the request, its answer recorded;
4. the jobs whose answer was ambiguous are reconciled at once.

What an answer does to the job:
- success: submitted, with the provider's GUID and status, first poll planned;
- not sent (connection refused) or a provider fault (500, 503): queued again after a
  backoff with jitter that grows with the failures of this call in a row (kept in the
  event data as `submit_failures`; `attempt` counts calls of the fax, and none was made).
  After PROVIDER_DOWN_AFTER such failures in a row every send pauses for a backoff;
- 429: queued again (the provider refused it, nothing was sent) and every send pauses
  until a job leaves the provider's hands (the tracker wakes the dispatcher) or the pause
  ends; then ONE fax is tried before the gates open again;
- another 4xx: failed, with the provider's message and its report in the same
  transaction. Refusals of the account itself (401, 403, an unknown account) would
  refuse every fax alike: the job is queued again and sends pause instead;
- ambiguous (a timeout or dropped connection after the upload, a gateway error, an
  unreadable success): reconciled (see faxgate.domain.reconcile) against the list, read
  at once, and the callbacks the tracker kept for GUIDs no job holds (the provider
  removes a fax once it is sent, so its callback may be all that is left of it). Found:
  submitted with that GUID. Not there: queued again, only where absence proves it.
  Cannot tell: uncertain, with a report telling the owner it was not sent again. Try
  later, or a list that cannot be read now: the job stays in `submitting` and is looked
  at again after a backoff, or at once when a callback for an unknown GUID arrives.
  Never sent on a guess.

Uncertain jobs wait for a person (`faxgate retry` or `faxgate cancel`); the dispatcher
looks at them again only when a callback for an unknown GUID arrives, which may be
theirs. They do count as rivals when another job to the same number is reconciled, so
that job is not handed a transmission they may own.

One dispatcher per store: it takes any job in `submitting` that it is not sending itself
for one whose fate is unknown. Cycles never overlap (a lock), so a job in `submitting`
at the start of a cycle has no request of this process in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pypdf import PdfReader

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.backoff import Backoff
from faxgate.domain.codes import StatusCode, describe_status
from faxgate.domain.jobs import ACTIVE_STATES, Document, Job, JobState
from faxgate.domain.numbers import FaxNumber
from faxgate.domain.outcomes import report_payload
from faxgate.domain.reconcile import (
    CannotTell,
    Found,
    Listing,
    NotThere,
    Sought,
    TryLater,
    Window,
    callback_wait,
    might_be_for,
    reconcile,
)
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.errors import (
    Ambiguous,
    BadResponse,
    HelloFaxError,
    NotSent,
    ProviderFault,
    RateLimited,
    Refused,
)
from faxgate.hellofax.models import Transmission, TransmissionPage, Upload
from faxgate.settings import DispatchSettings, PollingSettings
from faxgate.store import JobNotFound, NewNotification, StaleState, Store
from faxgate.waiting import wait_for_event

__all__ = ["DispatchReport", "Dispatcher"]

log = logging.getLogger("faxgate.dispatcher")

# Requests to the provider at once: enough that a backlog does not go one by one, few
# enough to be polite (the client keeps at most 10 connections).
CONCURRENCY: Final = 6
# Failures in a row (any job) after which the provider is taken to be down.
PROVIDER_DOWN_AFTER: Final = 3
# With nothing else due, look for work this often: the CLI queues jobs from another process.
IDLE_CHECK: Final = timedelta(seconds=1)  # one indexed query: cheap
# Reading the transmission list back further than this many pages is given up: the job is
# uncertain rather than the provider swamped.
MAX_LIST_PAGES: Final = 50
# Refusals that concern the account, not the fax: every fax would be refused alike.
ACCOUNT_REFUSALS: Final = frozenset({401, 403, 404})
# Errors of `client.send` raised before a byte is sent: a file that cannot be opened, a
# request that cannot be built.
_BEFORE_SENDING: Final = (FileNotFoundError, IsADirectoryError, PermissionError, ValueError)
_SHORTEST_WAIT: Final = 0.01  # seconds
_AFTER_WINDOW: Final = timedelta(milliseconds=50)

UNCERTAIN_REASON: Final = (
    "we could not tell whether the fax was sent ({why}); it was not sent again; "
    "check with the recipient and use `faxgate retry {job_id}` if it did not arrive"
)

PauseCause = Literal["rate_limited", "provider_down", "account"]


@dataclass(slots=True)
class DispatchReport:
    """What one cycle did."""

    capacity: int = 0  # room at the provider when the cycle looked
    limit: int = 0  # jobs the cycle was allowed to take
    picked: int = 0  # due jobs taken
    submitted: int = 0  # handed to the provider, with a GUID
    requeued: int = 0  # queued again: not sent (5xx, refused connection, 429, not there)
    failed: int = 0
    ambiguous: int = 0  # answers that left the fate unknown
    reconciled: int = 0  # found at the provider by reconciling
    uncertain: int = 0
    unresolved: int = 0  # left in submitting, to be looked at again
    skipped: int = 0  # moved by someone else meanwhile (a cancel)
    held: int = 0  # taken, but not sent because sends paused during the cycle
    rate_limited: bool = False
    paused: bool = False  # sends were paused when the cycle began

    @property
    def more_may_be_due(self) -> bool:
        """The cycle took all it was allowed to: another may find more at once."""
        return self.limit > 0 and self.picked >= self.limit and not self.held


@dataclass(slots=True)
class _Pause:
    cause: PauseCause
    until: datetime
    in_flight_mark: int | None = None  # jobs at the provider when a 429 paused sends


@dataclass(frozen=True, slots=True)
class _Ready:
    digits: str
    uploads: list[Upload]


@dataclass(frozen=True, slots=True)
class _Look:
    at: datetime
    tries: int


class Dispatcher:
    def __init__(
        self,
        store: Store,
        client: HelloFaxClient,
        settings: DispatchSettings,
        *,
        polling: PollingSettings,
        first_poll: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        on_progress: Callable[[Job], None] | None = None,
        provider_removes: bool = True,
        unmatched: Callable[[], Awaitable[list[Transmission]]] | None = None,
        callbacks_expected: bool = False,
        callback_retry_scale: float = 1.0,
    ) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._polling = polling
        # When a submitted fax is first polled: later when callbacks are expected.
        self._first_poll = first_poll or polling.first_interval
        self._clock = clock
        self._on_progress = on_progress
        self._backoff = Backoff(settings.backoff_first, settings.backoff_max, rand=rand)
        self._window = Window(after=settings.reconcile_window)
        self._cycle_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._pause: _Pause | None = None
        self._probing = False  # the next cycle sends one fax to see if the provider is back
        self._fault_streak = 0  # not sent or provider faults in a row, any job
        self._rate_streak = 0  # 429 pauses in a row
        self._looks: dict[str, _Look] = {}  # unresolved job id -> its next reconcile
        self._retry_times: list[datetime] = []  # a heap of the not_before times it set
        # The provider removes sent faxes: absence from its list proves nothing.
        self._provider_removes = provider_removes
        # Callbacks kept for GUIDs no job holds (the tracker's): evidence for reconciling.
        self._unmatched = unmatched
        self._new_evidence = unmatched is not None  # look at uncertain jobs once at start
        # Callbacks reach this faxgate (and are kept when no job holds their GUID yet).
        self._callbacks_expected = callbacks_expected and unmatched is not None
        self._started_at = clock()  # callbacks were answered from (about) here on
        self._callback_retry_scale = callback_retry_scale

    @property
    def paused_until(self) -> datetime | None:
        """When paused sends may resume (a fax to try first), or None when not paused."""
        return None if self._pause is None else self._pause.until

    # ------------------------------------------------------------------ lifecycle

    async def recover(self) -> None:
        """At startup: reconcile every job left in `submitting` by an earlier run."""
        async with self._cycle_lock:
            jobs = await asyncio.to_thread(self._store.jobs_in_states, [JobState.SUBMITTING])
            if not jobs:
                return
            log.info("recovering jobs=%d left in submitting", len(jobs))
            report = DispatchReport()
            await self._reconcile(jobs, report)
            log.info(
                "recovered found=%d requeued=%d uncertain=%d unresolved=%d",
                report.reconciled,
                report.requeued,
                report.uncertain,
                report.unresolved,
            )

    async def run(self) -> None:
        """Dispatch until `stop()` or cancelled. A cancel mid-request leaves the job in
        `submitting`, which the next start reconciles; `stop()` avoids that."""
        while not self._stopping:
            self._wakeup.clear()
            again = False
            try:
                again = (await self.dispatch_once()).more_may_be_due
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dispatch cycle failed")
            if again:
                await asyncio.sleep(0)
                continue
            # Jobs requeued by others (a busy line called again later) wait in the store.
            waiting = await asyncio.to_thread(self._store.next_not_before)
            await wait_for_event(self._wakeup, self._idle_seconds(waiting))

    def wake(self) -> None:
        """Run a cycle now (new work, or capacity freed); call it from the event loop."""
        self._wakeup.set()

    def evidence_arrived(self) -> None:
        """A callback came for a GUID no job holds: it may be the lost answer of a job in
        submitting or uncertain. Reconcile them now instead of at their next look."""
        self._new_evidence = True
        self._looks = {
            job_id: _Look(self._clock(), look.tries) for job_id, look in self._looks.items()
        }
        self._wakeup.set()

    def stop(self) -> None:
        """Take no new job; `run()` returns once the sends already in flight have their
        answer, so a clean shutdown leaves no job in `submitting`."""
        self._stopping = True
        self._wakeup.set()

    def _idle_seconds(self, waiting: datetime | None = None) -> float:
        now = self._clock()
        moments = [now + IDLE_CHECK, *(look.at for look in self._looks.values())]
        if waiting is not None:
            moments.append(waiting)
        if self._pause is not None:
            moments.append(self._pause.until)
        if self._retry_times:
            moments.append(self._retry_times[0])
        return max(_SHORTEST_WAIT, (min(moments) - now).total_seconds())

    # ------------------------------------------------------------------ one cycle

    async def dispatch_once(self) -> DispatchReport:
        async with self._cycle_lock:
            report = DispatchReport()
            await self._reconcile_due(report)
            await self._reconcile_uncertain(report)
            limit = await self._room(report)
            now = self._clock()
            # Retries due by now are this cycle's to take (or wait for room or the pause).
            while self._retry_times and self._retry_times[0] <= now:
                heapq.heappop(self._retry_times)
            if limit <= 0:
                return report
            jobs = await asyncio.to_thread(self._store.due_jobs, now, limit)
            report.limit, report.picked = limit, len(jobs)
            ambiguous = await self._submit_all(jobs, report)
            await self._mark_in_flight()
            if ambiguous:
                await self._reconcile(ambiguous, report)
            return report

    async def _reconcile_due(self, report: DispatchReport) -> None:
        jobs = await asyncio.to_thread(self._store.jobs_in_states, [JobState.SUBMITTING])
        present = {job.id for job in jobs}
        for gone in set(self._looks) - present:
            del self._looks[gone]
        now = self._clock()
        due = [job for job in jobs if job.id not in self._looks or self._looks[job.id].at <= now]
        await self._reconcile(due, report)

    async def _reconcile_uncertain(self, report: DispatchReport) -> None:
        """Uncertain jobs matched by a callback kept since: the only evidence that can
        still settle them (a person decides the rest)."""
        if not self._new_evidence or self._unmatched is None:
            return
        self._new_evidence = False
        reported = await self._unmatched()
        if not reported:
            return
        jobs = await asyncio.to_thread(self._store.jobs_in_states, [JobState.UNCERTAIN])
        now = self._clock()
        # Only what was reported counts here: a complete "list" of just those, read late.
        listing = Listing(transmissions=(), listed_at=now, complete=True, reported=reported)
        for job in jobs:
            if job.provider_guid is not None:
                continue
            sought = await asyncio.to_thread(self._sought, job)
            claimed, rivals = await asyncio.to_thread(self._claims, job, sought, listing)
            outcome = reconcile(
                sought, listing, claimed=claimed, rivals=rivals, window=self._window
            )
            if isinstance(outcome, Found):
                await self._adopt(
                    job, outcome, now, report, expect=JobState.UNCERTAIN, by="callback"
                )

    async def _room(self, report: DispatchReport) -> int:
        """How many jobs this cycle may send: the provider's free room, or none while
        paused, or one to try after a pause."""
        in_flight = await asyncio.to_thread(self._store.count_in_states, ACTIVE_STATES)
        free = max(0, self._settings.max_in_flight - in_flight)
        report.capacity = free
        pause = self._pause
        if pause is not None:
            eased = pause.in_flight_mark is not None and in_flight < pause.in_flight_mark
            if self._clock() < pause.until and not eased:
                report.paused = True
                return 0
            self._pause = None
            self._probing = True
            log.info("sends resume with one fax first cause=%s eased=%s", pause.cause, eased)
        return min(free, 1) if self._probing else free

    async def _mark_in_flight(self) -> None:
        """After a 429, remember how many jobs were at the provider: one fewer reopens."""
        pause = self._pause
        if pause is not None and pause.cause == "rate_limited" and pause.in_flight_mark is None:
            pause.in_flight_mark = await asyncio.to_thread(
                self._store.count_in_states, ACTIVE_STATES
            )

    def _pause_for(self, cause: PauseCause, length: timedelta) -> None:
        until = self._clock() + length
        if self._pause is None or until > self._pause.until:
            mark = self._pause.in_flight_mark if self._pause is not None else None
            self._pause = _Pause(cause, until, mark if cause == "rate_limited" else None)
        log.warning("sends paused cause=%s for=%.1fs", cause, length.total_seconds())

    def _provider_answered(self) -> None:
        self._fault_streak = 0
        self._rate_streak = 0
        self._probing = False

    # ------------------------------------------------------------------ submitting

    async def _submit_all(self, jobs: Sequence[Job], report: DispatchReport) -> list[Job]:
        """Submit the jobs, a few at once; returns those whose answer was ambiguous."""
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(job: Job) -> Job | None:
            async with slots:
                if self._pause is not None or self._stopping:  # asked to stop meanwhile
                    report.held += 1
                    return None
                return await self._submit(job, report)

        results = await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)
        ambiguous: list[Job] = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, Job):
                ambiguous.append(result)
            elif isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                # A store failure: the job stays where it was; a job left in submitting
                # is reconciled at the next cycle.
                log.error("submitting failed job=%s error=%r", job.id, result)
        return ambiguous

    async def _submit(self, job: Job, report: DispatchReport) -> Job | None:
        """One job's steps in order. Returns the job when its fate must be reconciled."""
        ready = await asyncio.to_thread(self._ready, job)
        if isinstance(ready, str):
            await self._fail(job, ready, expect=JobState.QUEUED, report=report, code="unsendable")
            return None
        now = self._clock()
        submitting = await self._move(
            job.id,
            JobState.SUBMITTING,
            expect=JobState.QUEUED,
            detail="handing the fax to the provider",
            now=now,
            submitted_at=now,
        )
        if submitting is None:
            report.skipped += 1
            return None
        log.info(
            "submitting job=%s to=%s attempt=%d documents=%d",
            job.id,
            job.to_number,
            job.attempt,
            len(ready.uploads),
        )
        try:
            sent = await self._client.send(
                ready.digits,
                ready.uploads,
                from_line=job.from_line,
                cover_to=job.cover_to,
                cover_from=job.cover_from,
                cover_message=job.cover_message,
            )
        except RateLimited as error:
            await self._rate_limited(submitting, error, report)
        except Refused as error:
            await self._refused(submitting, error, report)
        except (Ambiguous, BadResponse) as error:
            return self._ambiguous(submitting, error, report)
        except (NotSent, ProviderFault) as error:
            await self._not_sent(submitting, error, report)
        except HelloFaxError as error:  # a kind this code does not know: assume the worst
            return self._ambiguous(submitting, error, report)
        except _BEFORE_SENDING as error:
            reason = f"the fax could not be prepared ({error}); nothing was sent"
            await self._fail(
                submitting, reason, expect=JobState.SUBMITTING, report=report, code="unsendable"
            )
        except Exception as error:
            log.exception("unexpected error while sending job=%s", job.id)
            return self._ambiguous(submitting, error, report)
        else:
            await self._submitted(submitting, sent, ready.digits, report)
        return None

    def _ready(self, job: Job) -> _Ready | str:
        """The request's parts, or why the job cannot be sent at all (blocking: a thread)."""
        documents = self._store.documents(job.id)
        missing = [doc.name for doc in documents if not doc.path.is_file()]
        if missing:
            which = ", ".join(missing)
            verb = "is" if len(missing) == 1 else "are"
            return f"the document {which} {verb} no longer in the spool; nothing was sent"
        if not documents and not _has_cover(job):
            return "the job has no documents and no cover page; nothing was sent"
        try:
            digits = FaxNumber(job.to_number, None).provider_digits
        except ValueError:
            return f"{job.to_number!r} is not an international fax number; nothing was sent"
        uploads = [Upload(doc.name, doc.path, doc.content_type) for doc in documents]
        return _Ready(digits, uploads)

    async def _submitted(
        self, job: Job, sent: Sequence[Transmission], digits: str, report: DispatchReport
    ) -> None:
        tx = _answer_for(sent, digits)
        now = self._clock()
        first = self._first_poll
        moved = await self._move(
            job.id,
            JobState.SUBMITTED,
            expect=JobState.SUBMITTING,
            detail=f"the provider took the fax as {tx.guid}",
            data={"guid": tx.guid, "status": tx.status_code.value},
            now=now,
            provider_guid=tx.guid,
            provider_status=tx.status_code.value,
            provider_error=None,
            next_poll_at=now + first,
            poll_interval=self._polling.first_interval,
            reason=describe_status(tx.status_code),
        )
        self._provider_answered()
        metrics.submissions.labels(result="submitted").inc()
        if moved is None:
            # Nothing else moves a job in submitting; keep the GUID where a person finds it.
            log.error(
                "job=%s moved while being sent; the provider took it as guid=%s", job.id, tx.guid
            )
            return
        report.submitted += 1
        log.info(
            "submitted job=%s guid=%s to=%s status=%s",
            job.id,
            tx.guid,
            job.to_number,
            tx.status_code.value,
        )

    async def _not_sent(self, job: Job, error: HelloFaxError, report: DispatchReport) -> None:
        self._fault_streak += 1
        failures = await asyncio.to_thread(self._submit_failures, job.id) + 1
        delay = self._backoff.delay(failures)
        now = self._clock()
        retry_at = now + delay
        reason = (
            f"the provider could not take the fax ({error}); "
            f"trying again at {_clock_time(retry_at)}"
        )
        moved = await self._move(
            job.id,
            JobState.QUEUED,
            expect=JobState.SUBMITTING,
            detail=reason,
            data={
                "submit_failures": failures,
                "retry_in": delay.total_seconds(),
                "error": type(error).__name__,
                "http_status": error.status,
            },
            now=now,
            not_before=retry_at,
            reason=reason,
        )
        metrics.submissions.labels(result="retry").inc()
        if moved is not None:
            report.requeued += 1
            heapq.heappush(self._retry_times, retry_at)
        log.warning(
            "not sent job=%s failures=%d retry_in=%.1fs error=%s",
            job.id,
            failures,
            delay.total_seconds(),
            error,
        )
        if self._probing or self._fault_streak >= PROVIDER_DOWN_AFTER:
            streak = max(1, self._fault_streak - PROVIDER_DOWN_AFTER + 1)
            self._pause_for("provider_down", self._backoff.delay(streak))

    async def _rate_limited(self, job: Job, error: RateLimited, report: DispatchReport) -> None:
        now = self._clock()
        moved = await self._move(
            job.id,
            JobState.QUEUED,
            expect=JobState.SUBMITTING,
            detail="the provider is limiting the rate (429); not sent; sends paused",
            data={"rate_limited": True, "http_status": error.status},
            now=now,
            reason="waiting: the provider has too many faxes pending",
        )
        metrics.submissions.labels(result="rate_limited").inc()
        report.rate_limited = True
        if moved is not None:
            report.requeued += 1
        if self._pause is None or self._pause.cause != "rate_limited":
            self._rate_streak += 1
        if error.retry_after:
            length = timedelta(seconds=error.retry_after)
        else:  # a success between two 429s of one cycle reset the streak
            length = self._backoff.delay(max(1, self._rate_streak))
        log.warning("rate limited job=%s pause=%.1fs", job.id, length.total_seconds())
        self._pause_for("rate_limited", length)

    async def _refused(self, job: Job, error: Refused, report: DispatchReport) -> None:
        metrics.submissions.labels(result="refused").inc()
        if error.status in ACCOUNT_REFUSALS:
            now = self._clock()
            moved = await self._move(
                job.id,
                JobState.QUEUED,
                expect=JobState.SUBMITTING,
                detail=f"the provider refused the account ({error}); not sent; sends paused",
                data={"account_refused": True, "http_status": error.status},
                now=now,
                reason=f"waiting: {error}",
            )
            if moved is not None:
                report.requeued += 1
            log.error("account refused job=%s error=%s; check the provider settings", job.id, error)
            self._pause_for("account", self._settings.backoff_max)
            return
        self._provider_answered()
        await self._fail(job, str(error), expect=JobState.SUBMITTING, report=report, code="refused")

    def _ambiguous(self, job: Job, error: Exception, report: DispatchReport) -> Job:
        metrics.submissions.labels(result="ambiguous").inc()
        report.ambiguous += 1
        log.warning("ambiguous job=%s error=%s; reconciling", job.id, error)
        return job

    async def _fail(
        self,
        job: Job,
        reason: str,
        *,
        expect: JobState,
        report: DispatchReport,
        code: str,
    ) -> None:
        notify = NewNotification(
            kind="report",
            payload=report_payload(
                job_id=job.id,
                state=JobState.FAILED,
                reason=reason,
                status_code=None,
                error_code=None,
                pages=job.pages,
                attempts=job.attempt,
                provider_guid=None,
            ),
        )
        moved = await self._move(
            job.id,
            JobState.FAILED,
            expect=expect,
            detail=reason,
            notify=notify,
            data={"cause": code},
            now=self._clock(),
            reason=reason,
            next_poll_at=None,
        )
        if moved is None:
            report.skipped += 1
            return
        report.failed += 1
        metrics.outcomes.labels(state=JobState.FAILED.value, reason=code).inc()
        log.warning("failed job=%s reason=%r", job.id, reason)

    def _submit_failures(self, job_id: str) -> int:
        """Failed requests in a row for this call: kept on the event that queued it."""
        for event in reversed(self._store.events(job_id)):
            if event.to_state is JobState.QUEUED:
                value = event.data.get("submit_failures")
                return value if isinstance(value, int) else 0
        return 0

    # ------------------------------------------------------------------ reconciling

    async def _reconcile(self, jobs: Sequence[Job], report: DispatchReport) -> None:
        if not jobs:
            return
        sought = {job.id: await asyncio.to_thread(self._sought, job) for job in jobs}
        since = min(item.horizon(self._window) for item in sought.values())
        try:
            listing = await self._read_list(since)
            if self._unmatched is not None:
                listing = dataclasses.replace(listing, reported=await self._unmatched())
        except HelloFaxError as error:
            now = self._clock()
            for job in jobs:
                self._look_later(job.id, now, f"the transmission list could not be read: {error}")
            report.unresolved += len(jobs)
            return
        for job in jobs:
            await self._settle(job.id, sought[job.id], listing, report)

    async def _read_list(self, since: datetime) -> Listing:
        """The transmission list, newest first, read just back past `since`."""
        listed_at = self._clock()
        seen: list[Transmission] = []
        page: TransmissionPage | None = await self._client.list_transmissions(
            page_size=self._polling.page_size
        )
        pages = 1
        complete = False
        while page is not None:
            seen.extend(page.transmissions)
            if _reaches(page.transmissions, since):
                break
            if page.next_page_uri is None:
                complete = True
                break
            if not page.transmissions or pages >= MAX_LIST_PAGES:
                break
            previous = page
            page = await self._client.next_page(page)
            pages += 1
            if page is not None and _not_after(page.page, previous.page):
                break  # a provider that does not advance: stop, read as far as it went
        return Listing(transmissions=seen, listed_at=listed_at, complete=complete)

    async def _settle(
        self, job_id: str, sought: Sought, listing: Listing, report: DispatchReport
    ) -> None:
        job = await asyncio.to_thread(self._store.get_job, job_id)
        if job is None or job.state is not JobState.SUBMITTING:
            self._looks.pop(job_id, None)
            report.skipped += 1
            return
        claimed, rivals = await asyncio.to_thread(self._claims, job, sought, listing)
        proves_from = self._absence_proves_from(sought)
        outcome = reconcile(
            sought,
            listing,
            claimed=claimed,
            rivals=rivals,
            window=self._window,
            provider_removes=self._provider_removes,
            absence_proves_from=proves_from,
        )
        now = self._clock()
        if isinstance(outcome, TryLater):
            # Look again no later than the next moment that can decide it.
            moments = [sought.match_end(self._window), proves_from]
            until = min((m for m in moments if m is not None and m > now), default=None)
            self._look_later(job.id, now, outcome.reason, until=until)
            report.unresolved += 1
            return
        self._looks.pop(job.id, None)
        if isinstance(outcome, Found):
            listed = any(tx.guid == outcome.transmission.guid for tx in listing.transmissions)
            await self._adopt(job, outcome, now, report, by="list" if listed else "callback")
        elif isinstance(outcome, NotThere):
            await self._requeue_absent(job, outcome, now, report)
        elif isinstance(outcome, CannotTell):
            await self._uncertain(job, outcome, now, report)

    async def _adopt(
        self,
        job: Job,
        found: Found,
        now: datetime,
        report: DispatchReport,
        *,
        expect: JobState = JobState.SUBMITTING,
        by: Literal["list", "callback"] = "list",
    ) -> None:
        tx = found.transmission
        status = tx.status_code
        first = self._polling.first_interval
        # Its outcome (a kept callback for this GUID) is applied by the tracker's catch-up.
        moved = await self._move(
            job.id,
            JobState.SUBMITTED,
            expect=expect,
            detail=f"found at the provider as {tx.guid}: {found.reason}"
            + (" (by its callback; the provider no longer lists it)" if by == "callback" else ""),
            data={"guid": tx.guid, "status": status.value, "reconciled": "found", "by": by},
            now=now,
            provider_guid=tx.guid,
            provider_status=status.value,
            provider_error=None,
            # Already past pending: its callback may have come and gone, so poll at once.
            next_poll_at=now + first if status is StatusCode.PENDING else now,
            poll_interval=first,
            reason=describe_status(status),
        )
        if moved is None:
            report.skipped += 1
            return
        report.reconciled += 1
        log.info("reconciled job=%s outcome=found guid=%s status=%s", job.id, tx.guid, status.value)

    async def _requeue_absent(
        self, job: Job, outcome: NotThere, now: datetime, report: DispatchReport
    ) -> None:
        moved = await self._move(
            job.id,
            JobState.QUEUED,
            expect=JobState.SUBMITTING,
            detail=f"the provider never received the fax ({outcome.reason}); queued again",
            data={"reconciled": "not_there"},
            now=now,
            not_before=None,
            reason="the provider never received the fax; it is queued again",
        )
        if moved is None:
            report.skipped += 1
            return
        report.requeued += 1
        log.info("reconciled job=%s outcome=not_there; queued again", job.id)

    async def _uncertain(
        self, job: Job, outcome: CannotTell, now: datetime, report: DispatchReport
    ) -> None:
        reason = UNCERTAIN_REASON.format(why=outcome.reason, job_id=job.id)
        notify = NewNotification(
            kind="report",
            payload=report_payload(
                job_id=job.id,
                state=JobState.UNCERTAIN,
                reason=reason,
                status_code=None,
                error_code=None,
                pages=job.pages,
                attempts=job.attempt,
                provider_guid=None,
            ),
        )
        moved = await self._move(
            job.id,
            JobState.UNCERTAIN,
            expect=JobState.SUBMITTING,
            detail=f"could not tell whether the provider took the fax: {outcome.reason}",
            notify=notify,
            data={"reconciled": "cannot_tell"},
            now=now,
            reason=reason,
        )
        if moved is None:
            report.skipped += 1
            return
        report.uncertain += 1
        metrics.outcomes.labels(state=JobState.UNCERTAIN.value, reason="cannot_tell").inc()
        log.warning("reconciled job=%s outcome=uncertain why=%s", job.id, outcome.reason)

    def _absence_proves_from(self, sought: Sought) -> datetime | None:
        """From when a fax the provider took and removed would surely have left its
        callback with us, so that absence everywhere proves it was never taken; None:
        never. The provider posts a callback when a fax ends, before it removes it.

        Sent while this faxgate ran: its callback would have come to a running faxgate.
        Left by an earlier run (a crash): a callback posted while faxgate was down is
        tried again on the provider's schedule; wait for its next try (callback_wait)."""
        if not self._callbacks_expected:
            return None
        if sought.submitted_at >= self._started_at:
            return sought.submitted_at
        downtime = self._started_at - sought.submitted_at
        wait = callback_wait(downtime, self._callback_retry_scale)
        return None if wait is None else self._started_at + wait + _AFTER_WINDOW

    def _look_later(
        self, job_id: str, now: datetime, why: str, *, until: datetime | None = None
    ) -> None:
        previous = self._looks.get(job_id)
        tries = 1 if previous is None else previous.tries + 1
        delay = self._backoff.delay(tries)
        if until is not None and now < until < now + delay:
            # The window closes sooner: look just after it, not a whole backoff later.
            delay = until - now + _AFTER_WINDOW
        self._looks[job_id] = _Look(now + delay, tries)
        log.info("unresolved job=%s why=%s next_look_in=%.1fs", job_id, why, delay.total_seconds())

    def _sought(self, job: Job) -> Sought:
        """What the provider's list can show of the job's call (blocking: a thread)."""
        documents = self._store.documents(job.id)
        return Sought(
            job_id=job.id,
            to_number=job.to_number,
            # Set with submitting; a row edited by hand falls back to the last change.
            submitted_at=job.submitted_at or job.updated_at,
            document_pages=tuple(_count_pages(doc) for doc in documents),
            cover_page=_has_cover(job),
        )

    def _claims(self, job: Job, sought: Sought, listing: Listing) -> tuple[set[str], list[Sought]]:
        """GUIDs in the list that are not this call's, and the rival jobs (a thread)."""
        earlier = set(_texts_in(event.data for event in self._store.events(job.id)))
        claimed: set[str] = set()
        for tx in [*listing.transmissions, *listing.reported]:
            if tx.guid in claimed or not might_be_for(sought, tx, self._window):
                continue
            # Any job's call, now or before a retry, or this job's own earlier one.
            if tx.guid in earlier or self._store.call_owner(tx.guid) is not None:
                claimed.add(tx.guid)
        rivals = [
            self._sought(other)
            for other in self._store.jobs_in_states([JobState.SUBMITTING, JobState.UNCERTAIN])
            if other.id != job.id
            and other.provider_guid is None
            and other.to_number == job.to_number
        ]
        return claimed, rivals

    # ------------------------------------------------------------------ plumbing

    async def _move(
        self,
        job_id: str,
        to: JobState,
        *,
        expect: JobState,
        detail: str,
        now: datetime,
        notify: NewNotification | None = None,
        data: Mapping[str, Any] | None = None,
        **fields: object,
    ) -> Job | None:
        """One transition; None when someone else moved the job first (a cancel, say)."""
        try:
            moved = await asyncio.to_thread(
                self._store.transition,
                job_id,
                to,
                detail=detail,
                expect=expect,
                notify=notify,
                data=data,
                now=now,
                **fields,
            )
        except (StaleState, JobNotFound) as error:
            log.info("left alone job=%s: %s", job_id, error)
            return None
        if self._on_progress is not None:
            try:
                self._on_progress(moved)
            except Exception:
                log.exception("progress callback failed job=%s", job_id)
        return moved


def _has_cover(job: Job) -> bool:
    return any((job.cover_to, job.cover_from, job.cover_message))


def _answer_for(sent: Sequence[Transmission], digits: str) -> Transmission:
    """The transmission for our one number (a send answers with one per number)."""
    for tx in sent:
        if tx.to.strip().lstrip("+") == digits:
            return tx
    return sent[0]


def _count_pages(document: Document) -> int | None:
    """A PDF's page count; None for other kinds or a file that cannot be read."""
    path: Path = document.path
    if document.content_type != "application/pdf" and path.suffix.lower() != ".pdf":
        return None
    try:
        return len(PdfReader(path).pages)
    except Exception:  # any damage: the count is just unknown
        return None


def _reaches(transmissions: Iterable[Transmission], since: datetime) -> bool:
    return any(tx.created_at is not None and tx.created_at < since for tx in transmissions)


def _not_after(page: int | None, previous: int | None) -> bool:
    return page is not None and previous is not None and page <= previous


def _texts_in(values: Iterable[Any]) -> Iterable[str]:
    """Every string inside nested event data (GUIDs of earlier calls among them)."""
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, Mapping):
            yield from _texts_in(value.values())
        elif isinstance(value, list | tuple):
            yield from _texts_in(value)


def _clock_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")
