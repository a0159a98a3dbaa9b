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

Alone on a store (SQLite), the dispatcher takes any job in `submitting` that it is not
sending itself for one whose fate is unknown. Sharing a store with other instances
(PostgreSQL, `share`), it claims its due jobs with a lease and settles only the jobs in
`submitting` it holds, taking over those whose owner's lease ran out (faxgate.store.claims).
Cycles never overlap (a lock), so a job in `submitting` at the start of a cycle has no
request of this process in flight.

The dispatcher runs the cycle; its parts are beside it: the submitter (a job's steps and
what each answer does), the pause gate, the reconciler, and the moves they share.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

from faxgate.clock import utc_now
from faxgate.domain.backoff import Backoff
from faxgate.domain.jobs import ACTIVE_STATES, Job, JobState
from faxgate.domain.provider import FaxProvider, FaxReport
from faxgate.domain.reconcile import Window
from faxgate.runner import run_loop
from faxgate.sending.moves import DispatchReport, JobMoves, SendingParts
from faxgate.sending.pause import PauseGate
from faxgate.sending.policy import SendingPolicy, hold, judge_due
from faxgate.sending.reconciler import Reconciler
from faxgate.sending.submitter import CONCURRENCY, Submitter
from faxgate.settings import DispatchSettings, PolicySettings, PollingSettings
from faxgate.store import Share, Store

__all__ = ["CONCURRENCY", "DispatchReport", "Dispatcher"]

log = logging.getLogger("faxgate.dispatcher")

# With nothing else due, look for work this often: the CLI queues jobs from another process.
IDLE_CHECK: Final = timedelta(seconds=1)  # one indexed query: cheap
_SHORTEST_WAIT: Final = 0.01  # seconds
# Sharing the store, a cycle claims no more due jobs than it sends at once, twice over:
# what it claims, the other instances cannot send until the lease runs out.
SHARED_CLAIM: Final = 2 * CONCURRENCY


class Dispatcher:
    def __init__(
        self,
        store: Store,
        provider: FaxProvider,
        settings: DispatchSettings,
        *,
        polling: PollingSettings,
        first_poll: timedelta | None = None,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        on_progress: Callable[[Job], None] | None = None,
        provider_removes: bool = True,
        unmatched: Callable[[], Awaitable[list[FaxReport]]] | None = None,
        callbacks_expected: bool = False,
        callback_retry_scale: float = 1.0,
        share: Share | None = None,
        policy: SendingPolicy | None = None,
    ) -> None:
        self._store = store
        # Sharing the store with other instances: jobs are claimed, never just read.
        self._share = share
        # The sending policy in use; a reload replaces it whole (faxgate/reload.py).
        self.policy = policy or SendingPolicy()
        self._settings = settings
        self._clock = clock
        self._backoff = Backoff(settings.backoff_first, settings.backoff_max, rand=rand)
        self._gate = PauseGate(clock, self._backoff)
        self._moves = JobMoves(store, on_progress)
        parts = SendingParts(store, provider, self._moves, polling, self._backoff, clock)
        self._submitter = Submitter(
            parts, self._gate, settings=settings, first_poll=first_poll or polling.first_interval
        )
        self._reconciler = Reconciler(
            parts,
            window=Window(after=settings.reconcile_window),
            provider_removes=provider_removes,
            unmatched=unmatched,
            callbacks_expected=callbacks_expected,
            callback_retry_scale=callback_retry_scale,
            share=share,
        )
        self._cycle_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._stopping = False

    @property
    def paused_until(self) -> datetime | None:
        """When paused sends may resume (a fax to try first), or None when not paused."""
        return self._gate.until

    # ------------------------------------------------------------------ lifecycle

    async def recover(self) -> None:
        """At startup: reconcile every job left in `submitting` by an earlier run."""
        async with self._cycle_lock:
            jobs = await asyncio.to_thread(self._reconciler.submitting)
            if not jobs:
                return
            log.info("recovering jobs=%d left in submitting", len(jobs))
            report = DispatchReport()
            await self._reconciler.reconcile(jobs, report)
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
        await run_loop(
            self._cycle,
            self._idle,
            self._wakeup,
            log=log,
            failed="dispatch cycle failed",
            stopping=lambda: self._stopping,
        )

    async def _cycle(self) -> bool:
        return (await self.dispatch_once()).more_may_be_due

    async def _idle(self) -> float:
        # Jobs requeued by others (a busy line called again later) wait in the store.
        waiting = await asyncio.to_thread(self._store.next_not_before)
        return self._idle_seconds(waiting)

    async def apply_policy(self, settings: PolicySettings) -> None:
        """Judge by the policy these settings give from the next cycle on (a reload)."""
        await self.use_policy(SendingPolicy.from_settings(settings))

    async def use_policy(self, policy: SendingPolicy) -> None:
        """Judge by new rules from the next cycle on; the jobs the old ones held back are
        judged again at once."""
        self.policy = policy
        released = await asyncio.to_thread(self._store.release_waits)
        if released:
            log.info("sending policy changed: jobs=%d judged again", released)
        self.wake()

    def wake(self) -> None:
        """Run a cycle now (new work, or capacity freed); call it from the event loop."""
        self._wakeup.set()

    def evidence_arrived(self) -> None:
        """A callback came for a GUID no job holds: it may be the lost answer of a job in
        submitting or uncertain. Reconcile them now instead of at their next look."""
        self._reconciler.evidence_arrived()
        self._wakeup.set()

    def stop(self) -> None:
        """Take no new job; `run()` returns once the sends already in flight have their
        answer, so a clean shutdown leaves no job in `submitting`."""
        self._stopping = True
        self._wakeup.set()

    def _idle_seconds(self, waiting: datetime | None = None) -> float:
        now = self._clock()
        moments = [now + IDLE_CHECK, *self._reconciler.next_looks()]
        if waiting is not None:
            moments.append(waiting)
        if self._gate.until is not None:
            moments.append(self._gate.until)
        retry = self._submitter.next_retry()
        if retry is not None:
            moments.append(retry)
        return max(_SHORTEST_WAIT, (min(moments) - now).total_seconds())

    # ------------------------------------------------------------------ one cycle

    async def dispatch_once(self) -> DispatchReport:
        async with self._cycle_lock:
            report = DispatchReport()
            await self._reconciler.reconcile_due(report)
            await self._reconciler.reconcile_uncertain(report)
            limit = await self._room(report)
            now = self._clock()
            self._submitter.forget_retries_due(now)
            if limit <= 0:
                return report
            if self._share is not None:
                limit = min(limit, SHARED_CLAIM)  # the next cycle claims more at once
            policy = self.policy
            jobs = await asyncio.to_thread(self._take_due, now, limit, policy.per_number)
            report.limit, report.picked = limit, len(jobs)
            if jobs:  # judged by the rules, in the order the provider's room is shared
                jobs = await self._apply_rules(policy, jobs, now, report)
            ambiguous = await self._submitter.submit_all(jobs, report, lambda: self._stopping)
            await self._mark_in_flight()
            if ambiguous:
                await self._reconciler.reconcile(ambiguous, report)
            return report

    async def _apply_rules(
        self, policy: SendingPolicy, jobs: list[Job], now: datetime, report: DispatchReport
    ) -> list[Job]:
        """The jobs the rules let go, in sending order; the others are told to wait (their
        not_before and why) or failed with the rule's reason in their report."""
        verdicts = await asyncio.to_thread(judge_due, policy, self._store, jobs, now)
        for job, wait in verdicts.waits:
            if await asyncio.to_thread(hold, self._store, job, wait, now):
                report.waiting += 1
        for job, refusal in verdicts.refusals:
            moved = await self._moves.end(
                job,
                JobState.FAILED,
                refusal.why,
                expect=JobState.QUEUED,
                detail=refusal.why,
                now=now,
            )
            if moved is not None:
                report.failed += 1
                log.info("refused by a rule job=%s: %s", job.id, refusal.why)
        return verdicts.go

    def _take_due(self, now: datetime, limit: int, per_number: int | None) -> list[Job]:
        """The due jobs this cycle sends, at most `per_number` in flight to one number (the
        one definition of due: faxgate.store.claims). Sharing the store, they are claimed
        (committed before any request leaves), within the provider's limit counted across
        every instance; alone, they are read."""
        if self._share is None:
            return self._store.due_jobs(now, limit, per_number=per_number)
        return self._store.claim_due_jobs(
            now,
            limit,
            owner=self._share.owner,
            lease=self._share.lease,
            max_in_flight=self._settings.max_in_flight,
            per_number=per_number,
        )

    async def _room(self, report: DispatchReport) -> int:
        """How many jobs this cycle may send: the provider's free room, or none while
        paused, or one to try after a pause."""
        in_flight = await asyncio.to_thread(self._store.count_in_states, ACTIVE_STATES)
        free = max(0, self._settings.max_in_flight - in_flight)
        report.capacity = free
        limit = self._gate.room(free, in_flight)
        if limit is None:
            report.paused = True
            return 0
        return limit

    async def _mark_in_flight(self) -> None:
        """After a 429, remember how many jobs were at the provider: one fewer reopens."""
        if self._gate.wants_in_flight_mark:
            in_flight = await asyncio.to_thread(self._store.count_in_states, ACTIVE_STATES)
            self._gate.mark_in_flight(in_flight)
