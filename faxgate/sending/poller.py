"""The poller: asks the provider about faxes whose callback has not settled them.

Callbacks may never come (no public URL, a firewall), so every job at the provider carries
its own next poll time, pushed back with backoff each time it is found still pending. A
cycle reads the due jobs one by one when they are few, and the transmission list (newest
first) when they are many, stopping as soon as every due job was seen: the cost of a
cycle grows with the due jobs, not with the account's history.

The provider removes a fax once it is sent, so a poll may never see a fax end: it answers
404 instead. Such a job ends `presumed_sent` (settle_vanished), never failed on a guess.

The cycles run on faxgate's loop shape (faxgate.runner): one at start, then one at every
`tick` of an APScheduler interval job (fixed rate; ticks missed while a cycle runs are
one) or when woken. The scheduler only keeps time: each job's own schedule lives in the
store (next_poll_at).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NoReturn, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.jobs import ACTIVE_STATES, Job, JobState
from faxgate.domain.provider import FaxPage, FaxProvider, FaxReport, ProviderError, is_gone
from faxgate.runner import run_loop
from faxgate.sending.tracker import Tracker
from faxgate.settings import PollingSettings
from faxgate.store import Share, StaleState, Store

__all__ = ["PollMode", "PollReport", "Poller"]

log = logging.getLogger("faxgate.poller")

_T = TypeVar("_T")

PollMode = Literal["one_by_one", "list"]

# Only these are the poller's; submitting and uncertain jobs are the dispatcher's to reconcile.
POLLED_STATES: Final = frozenset({JobState.SUBMITTED, JobState.TRANSMITTING})
# The provider's clock and ours may differ: look this much further back in the list.
CLOCK_SKEW: Final = timedelta(minutes=5)
# At most this many due jobs per cycle; the provider never holds more than 200 in flight.
MAX_DUE: Final = 1000
# Due jobs missing from the list asked for one by one in a cycle, at most.
MAX_ASKED_ALONE: Final = 100


@dataclass(frozen=True, slots=True)
class PollReport:
    """What one cycle did."""

    due: int  # jobs due a poll (in the poller's states)
    requests: int  # requests made to the provider
    mode: PollMode | None  # None when nothing was due
    settled: int  # jobs that left the provider's hands (sent, failed, queued again)
    completed: bool = True  # False when a provider error ended the cycle early


class _CycleEnded(Exception):
    """The provider failed; the rest of the cycle waits for the next tick."""


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a cycle asks with and writes to."""

    store: Store
    provider: FaxProvider
    tracker: Tracker
    settings: PollingSettings
    # A provider that keeps its faxes means something else by a 404: nothing is presumed.
    provider_removes: bool


class Poller:
    def __init__(
        self,
        store: Store,
        provider: FaxProvider,
        tracker: Tracker,
        settings: PollingSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
        provider_removes: bool | None = None,
        share: Share | None = None,
    ) -> None:
        removes = provider.removes_sent if provider_removes is None else provider_removes
        self._parts = _Parts(store, provider, tracker, settings, removes)
        self._store = store
        self._settings = settings
        self._clock = clock
        self._cycle_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        # Sharing the store with other instances: due polls are claimed, so two instances
        # never ask the provider about one fax at once.
        self._share = share

    # ------------------------------------------------------------------ one cycle

    def _take_due(self, now: datetime) -> list[Job]:
        if self._share is None:
            return self._store.due_polls(now, MAX_DUE)
        return self._store.claim_due_polls(
            now, MAX_DUE, owner=self._share.owner, lease=self._share.lease
        )

    async def poll_once(self) -> PollReport:
        now = self._clock()
        candidates = await asyncio.to_thread(self._take_due, now)
        due = [job for job in candidates if job.state in POLLED_STATES and job.provider_guid]
        if not due:
            return PollReport(due=0, requests=0, mode=None, settled=0)
        mode: PollMode = "one_by_one" if len(due) <= self._settings.list_threshold else "list"
        metrics.polls.labels(mode=mode).inc()
        cycle = _Cycle(self._parts, due)
        try:
            if mode == "one_by_one":
                await cycle.read_one_by_one(due)
            else:
                out = await asyncio.to_thread(self._store.count_in_states, ACTIVE_STATES)
                await cycle.read_list(max_pages=max(1, math.ceil(out / self._settings.page_size)))
            await cycle.settle_vanished()
        except _CycleEnded:
            pass
        await cycle.back_off(now)
        log.debug(
            "poll cycle mode=%s due=%d requests=%d settled=%d",
            mode,
            len(due),
            cycle.requests,
            cycle.settled,
        )
        return PollReport(
            due=len(due),
            requests=cycle.requests,
            mode=mode,
            settled=cycle.settled,
            completed=not cycle.ended,
        )

    # ------------------------------------------------------------------ the tick

    async def run(self) -> None:
        """Run a cycle at once, then every `tick` or when woken, until cancelled. A cancel
        mid-cycle ends it there; each of its writes is atomic, so the store stays
        consistent."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._tick_due,
            "interval",
            seconds=self._settings.tick.total_seconds(),
            name="poll tick",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()  # inside the running loop, as AsyncIOScheduler needs
        try:
            await run_loop(
                self._tick, self._idle, self._wakeup, log=log, failed="poll cycle failed"
            )
        finally:
            scheduler.shutdown(wait=False)

    async def _tick_due(self) -> None:
        # A coroutine, so the scheduler runs it on the event loop, not in a thread.
        self._wakeup.set()

    def wake(self) -> None:
        """Run a cycle now instead of at the next tick (once more, when one is running)."""
        self._wakeup.set()

    async def _tick(self) -> bool:
        async with self._cycle_lock:
            await self.poll_once()
        return False

    async def _idle(self) -> None:
        return None  # until the next tick or wake-up


class _Cycle:
    """The state of one poll cycle: what was asked, seen and settled."""

    def __init__(self, parts: _Parts, due: Sequence[Job]) -> None:
        self._parts = parts
        self._settings = parts.settings
        self.due = {job.provider_guid: job for job in due if job.provider_guid}
        self.now_state: dict[str, JobState] = {job.id: job.state for job in due}
        self.polled: set[str] = set()  # job ids to push back (seen, or unknown to the provider)
        self.requests = 0
        self.settled = 0
        self.ended = False
        self.vanished: list[Job] = []  # answered 404: removed, most probably sent
        self.list_answered = False  # the account's list was read this cycle

    async def read_one_by_one(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            guid = job.provider_guid
            assert guid is not None
            try:
                tx = await self._call(self._parts.provider.get_fax(guid), gone_ok=True)
            except ProviderError:
                # A 404 for a fax the provider once had: it removes a fax once it is sent.
                # Never fail a job on a guess; settle_vanished() decides, once the account
                # itself is seen to answer.
                log.info("provider no longer shows job=%s guid=%s", job.id, guid)
                self.polled.add(job.id)
                if self._parts.provider_removes:
                    self.vanished.append(job)
                continue
            if tx.guid != guid:
                log.warning("provider answered for another guid job=%s guid=%s", job.id, guid)
                self.polled.add(job.id)
                continue
            await self._observe(job, tx)

    async def read_list(self, max_pages: int) -> None:
        """Read the list newest first until every due job was seen, the pages are older,
        or `max_pages` were read: as many as our faxes at the provider fill. A fax that
        stays pending behind many settled ones is asked for on its own rather than reached
        by reading back through all of them."""
        oldest = min(_sent_at(job) for job in self.due.values())
        cutoff = oldest - CLOCK_SKEW
        unseen = set(self.due)
        followed: set[str] = set()
        page: FaxPage | None = await self._call(
            self._parts.provider.list_faxes(page_size=self._settings.page_size)
        )
        self.list_answered = True
        while page is not None:
            for tx in page.faxes:
                if tx.guid in unseen:
                    unseen.discard(tx.guid)
                    await self._observe(self.due[tx.guid], tx)
            if not unseen or not page.faxes or _older_than(page.faxes, cutoff):
                break
            if len(followed) + 1 >= max_pages:
                break
            link = page.next_page
            if link is None or link in followed:
                break
            followed.add(link)
            page = await self._call(self._parts.provider.next_page(page))
        if unseen:
            await self._read_missing([self.due[guid] for guid in unseen])

    async def _read_missing(self, jobs: list[Job]) -> None:
        """Due jobs the list did not show: ask for some on their own, push back the rest.
        The provider removes a fax once it is sent, so a fax missing from the list is
        most often gone for good: asking answers 404, and ends the job (settle_vanished).
        Absence from the list alone is not enough: pages shift under removals."""
        jobs.sort(key=_sent_at)
        limit = max(self._settings.list_threshold, MAX_ASKED_ALONE)
        asked, rest = jobs[:limit], jobs[limit:]
        for job in rest:
            log.info("not in the transmission list job=%s guid=%s", job.id, job.provider_guid)
            self.polled.add(job.id)
        await self.read_one_by_one(asked)

    async def settle_vanished(self) -> None:
        """End the jobs whose fax the provider no longer shows, as presumed sent.

        The provider had each of them (it gave us the GUID, and it was seen pending or
        transmitting), and it removes a fax once it is sent; whether failed ones go too is
        not documented, so this is a presumption and says so. A 404 could also come from
        an account that is wrong or gone: the account's list must answer in the same
        cycle, and must not show the fax, before anything is presumed."""
        if not self.vanished:
            return
        listed: set[str] = set()
        if not self.list_answered:
            page = await self._call(self._parts.provider.list_faxes(page_size=1))
            self.list_answered = True
            listed = {tx.guid for tx in page.faxes}
        for job in self.vanished:
            if job.provider_guid in listed:
                continue  # shown after all: asked again at its next poll
            after = await self._parts.tracker.presume_sent(job, "the provider answered 404 for it")
            if after is not None:
                self.now_state[job.id] = after.state
                self.settled += 1

    async def _observe(self, job: Job, tx: FaxReport) -> None:
        self.polled.add(job.id)
        after = await self._parts.tracker.observe(tx, source="poll")
        if after is None:
            return
        self.now_state[job.id] = after.state
        if after.state not in POLLED_STATES:
            self.settled += 1

    async def back_off(self, now: datetime) -> None:
        """Jobs still pending are polled again later, each a little later than before."""
        settings = self._settings
        for job in self.due.values():
            state = self.now_state[job.id]
            if job.id not in self.polled or state not in POLLED_STATES:
                continue
            previous = job.poll_interval or settings.first_interval / 2
            interval = min(max(previous * 2, settings.first_interval), settings.max_interval)
            # StaleState: settled meanwhile (a callback), nothing left to poll.
            with contextlib.suppress(StaleState):
                await asyncio.to_thread(
                    self._parts.store.update_fields,
                    job.id,
                    expect=state,
                    now=now,
                    next_poll_at=now + interval,
                    poll_interval=interval,
                )

    async def _call(self, request: Awaitable[_T], *, gone_ok: bool = False) -> _T:
        """One request; a provider failure ends the cycle. With `gone_ok`, an answer that
        the fax is not there (404, 410) is the caller's to judge."""
        self.requests += 1
        try:
            return await request
        except ProviderError as problem:
            if gone_ok and is_gone(problem):
                raise
            self._end(problem)

    def _end(self, problem: ProviderError) -> NoReturn:
        self.ended = True
        log.warning(
            "poll cycle ended early error=%s: %s; trying again at the next tick",
            type(problem).__name__,
            problem,
        )
        raise _CycleEnded from problem


def _sent_at(job: Job) -> datetime:
    return job.submitted_at or job.created_at


def _older_than(transmissions: Sequence[FaxReport], cutoff: datetime) -> bool:
    """Whether the page reaches back before `cutoff` (the list is newest first)."""
    stamps = [tx.created_at for tx in transmissions if tx.created_at is not None]
    return bool(stamps) and min(stamps) < cutoff
