"""The tracker: applies what the provider reports about a transmission to its job.

Callbacks, polls and the dispatcher's reconciliation all hand their reports here, so the
rules of moving forward live in one place (faxgate.domain.outcomes) and every outcome
writes its report to the outbox in the same transaction as the move.

A callback can beat the dispatcher: the provider may report on a transmission before the
answer to the send that created it has been recorded, or that answer may be lost for good
(a dropped connection). Such a report is kept in the store (bounded: UNMATCHED_KEEP,
UNMATCHED_MAX) and applied as soon as a job holds that GUID (`catch_up`): the dispatcher
records the send's answer, or reconciling finds the fax by this very report. The provider
removes a fax once it is sent, so this report may be the only record of it left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.jobs import Job, JobState, RetryPolicy
from faxgate.domain.outcomes import (
    PRESUMED_SENT_REASON,
    Decision,
    Move,
    Report,
    decide,
)
from faxgate.domain.provider import FaxReport, report_from_body, report_to_body
from faxgate.sending.moves import ending_report, has_cover, tell_progress
from faxgate.sending.pages import own_page_count
from faxgate.store import JobNotFound, NewNotification, StaleState, Store, UnmatchedReport

__all__ = ["Source", "Tracker"]

log = logging.getLogger("faxgate.tracker")

Source = Literal["callback", "poll", "reconcile"]

# Jobs the provider had and may since have removed: they can be presumed sent.
PRESUMABLE: Final = frozenset({JobState.SUBMITTED, JobState.TRANSMITTING})

# How long, and how many, reports for GUIDs no job holds are kept: longer than the
# provider retries a callback (about 34 hours), so a late one still finds its job.
UNMATCHED_KEEP: Final = timedelta(hours=48)
UNMATCHED_MAX: Final = 10_000
# What a call to the provider left on its job; a retry clears them for the next call.
_CALL_FIELDS: Final = (
    "provider_guid",
    "provider_status",
    "provider_error",
    "pages",
    "next_poll_at",
    "poll_interval",
)


class Tracker:
    def __init__(
        self,
        store: Store,
        retry_policy: RetryPolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_progress: Callable[[Job], None] | None = None,
        on_unmatched: Callable[[], None] | None = None,
        retry_for: Callable[[Job, RetryPolicy], RetryPolicy] | None = None,
        shared: bool = False,
    ) -> None:
        self._store = store
        # A job's retries: its own where a sending rule sets them (faxgate/sending/policy.py),
        # else [retry]'s.
        self._retries: Callable[[Job], RetryPolicy] = (
            (lambda job: retry_policy)
            if retry_for is None
            else (lambda job: retry_for(job, retry_policy))
        )
        # Sharing the store with other instances, a callback may have been kept by
        # another: the store is asked, not this instance's memory of what it kept.
        self._shared = shared
        self._on_unmatched = on_unmatched
        self._clock = clock
        self._on_progress = on_progress
        self._early: set[str] = store.unmatched_guids()  # GUIDs with kept reports
        self._catching_up: set[asyncio.Task[Job | None]] = set()

    async def observe(self, tx: FaxReport, *, source: Source) -> Job | None:
        """Apply a report about an outbound transmission to its job.

        Returns the job as it stands afterwards (unchanged when the report was stale), or
        None when no job has this transmission (yet: a callback is kept for its send's
        answer). Store failures propagate: the caller must not acknowledge a report that
        was not recorded.
        """
        if tx.is_inbound:
            return None
        if tx.status_code is None:
            # A status nobody has published: it moves nothing, and is never a failure.
            log.info("report with an unknown status ignored guid=%s source=%s", tx.guid, source)
            return await asyncio.to_thread(self._store.find_by_provider_guid, tx.guid)
        job = await self._observe(tx, source)
        if job is not None or source != "callback":
            return job
        await self._keep_early(tx)
        # The send's answer may have been recorded while we looked.
        if await asyncio.to_thread(self._store.find_by_provider_guid, tx.guid) is not None:
            return await self._apply_early(tx.guid)
        return None

    async def unmatched(self) -> list[FaxReport]:
        """The kept reports for GUIDs no job holds, oldest first: evidence for reconciling."""
        return _readable(await asyncio.to_thread(self._store.unmatched_reports))

    def catch_up(self, job: Job) -> None:
        """A job just got its GUID: apply the reports that came for it first."""
        if job.provider_guid is None:
            return
        if not self._shared and job.provider_guid not in self._early:
            return
        task = asyncio.create_task(self._apply_early(job.provider_guid))
        self._catching_up.add(task)
        task.add_done_callback(self._caught_up)

    def _caught_up(self, task: asyncio.Task[Job | None]) -> None:
        self._catching_up.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Not lost: the job's polls read the same outcome from the provider.
            log.error("early report not applied error=%r", task.exception())

    async def _keep_early(self, tx: FaxReport) -> None:
        """Keep the report durably before the callback is answered: the provider may
        remove the fax once it has its 200."""
        dropped = await asyncio.to_thread(
            self._store.keep_unmatched,
            tx.guid,
            _code(tx),
            report_to_body(tx),
            now=self._clock(),
            keep_for=UNMATCHED_KEEP,
            keep_at_most=UNMATCHED_MAX,
        )
        if dropped:
            log.warning("unmatched reports dropped for room count=%d", dropped)
        # Added, not reread: two callbacks kept at once must not hide each other. One
        # dropped for room stays listed here (catching up on it then finds nothing) until
        # the set outgrows the table's bound and is read again.
        self._early.add(tx.guid)
        if len(self._early) > UNMATCHED_MAX:
            self._early = await asyncio.to_thread(self._store.unmatched_guids)
            self._early.add(tx.guid)
        log.info("report kept for a GUID no job holds guid=%s status=%s", tx.guid, _code(tx))
        if self._on_unmatched is not None:
            self._on_unmatched()  # it may be the lost answer of a job being reconciled

    async def _apply_early(self, guid: str) -> Job | None:
        job = None
        for tx in _readable(await asyncio.to_thread(self._store.unmatched_reports, guid)):
            if tx.status_code is not None:  # kept without one: evidence, but nothing to apply
                job = await self._observe(tx, "callback")
        if job is not None:
            await asyncio.to_thread(self._store.drop_unmatched, guid)
            self._early.discard(guid)
        return job

    async def _observe(self, tx: FaxReport, source: Source) -> Job | None:
        assert tx.status_code is not None  # observe() answered unknown ones
        report = Report(status=tx.status_code, error=tx.error_code, pages=tx.num_pages_billed)
        for last_try in (False, True):
            job = await asyncio.to_thread(self._store.find_by_provider_guid, tx.guid)
            if job is None:
                log.info(
                    "unknown transmission guid=%s status=%s source=%s",
                    tx.guid,
                    tx.status_code.value,
                    source,
                )
                return None
            now = self._clock()
            decision = decide(
                state=job.state,
                attempt=job.attempt,
                report=report,
                policy=self._retries(job),
                now=now,
            )
            if decision.move is Move.NOTHING:
                log.debug(
                    "report ignored job=%s guid=%s status=%s source=%s why=%s",
                    job.id,
                    tx.guid,
                    tx.status_code.value,
                    source,
                    decision.reason,
                )
                return job
            try:
                moved = await asyncio.to_thread(self._apply, job, tx, report, decision, source, now)
            except StaleState as stale:
                # Another observer moved the job between our read and our write.
                if last_try:
                    log.info(
                        "report dropped job=%s guid=%s status=%s source=%s now=%s",
                        job.id,
                        tx.guid,
                        tx.status_code.value,
                        source,
                        stale.actual.value,
                    )
                    return await asyncio.to_thread(self._store.get_job, job.id)
                continue
            except JobNotFound:
                return None
            self._count(moved, report, decision)
            log.info(
                "job=%s %s -> %s guid=%s status=%s%s source=%s reason=%r",
                moved.id,
                job.state.value,
                moved.state.value,
                tx.guid,
                tx.status_code.value,
                f"/{tx.error_code.value}" if tx.error_code else "",
                source,
                decision.reason,
            )
            tell_progress(self._on_progress, moved)
            return moved
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(
        self,
        job: Job,
        tx: FaxReport,
        report: Report,
        decision: Decision,
        source: Source,
        now: datetime,
    ) -> Job:
        target = decision.target
        assert target is not None
        status = report.status.value
        error = report.error.value if report.error else None
        data: dict[str, Any] = {"source": source, "guid": tx.guid, "status": status}
        if error:
            data["error"] = error
        pages = report.pages if report.pages is not None else job.pages
        if pages is None and decision.ends_story:
            pages = self._own_pages(job)

        notify: NewNotification | None = None
        fields: dict[str, Any] = {"provider_status": status, "provider_error": None, "pages": pages}
        if decision.move is Move.RETRY:
            # A new call gets a new transmission; the old GUID stays in the event.
            fields = dict.fromkeys(_CALL_FIELDS) | {"attempt": job.attempt + 1}
            fields["not_before"] = decision.retry_at
        elif decision.ends_story:
            if decision.move is Move.CORRECTED:
                data["late"] = True
            notify = ending_report(
                job,
                target,
                decision.reason,
                status_code=status,
                error_code=error,
                pages=pages,
                provider_guid=tx.guid,
            )
            fields |= {"provider_error": error, "next_poll_at": None}
        elif decision.move is Move.CONFIRMED:
            # The owner was told "presumed sent"; this only makes it sure: no second report.
            data["late"] = True
            fields["finished_at"] = job.finished_at or now
        else:
            # Still at the provider: a job reconciled from uncertain may have no poll planned.
            fields["next_poll_at"] = job.next_poll_at if job.next_poll_at is not None else now
        return self._store.transition(
            job.id,
            target,
            detail=decision.reason,
            expect=job.state,
            notify=notify,
            data=data,
            now=now,
            reason=decision.reason,
            **fields,
        )

    async def presume_sent(self, job: Job, evidence: str, *, source: Source = "poll") -> Job | None:
        """End a job the provider no longer shows: it removes a fax once it is sent.

        `job` as the caller saw it (submitted or transmitting, with its GUID); `evidence`
        says what was seen, for the event. Returns the job afterwards, or None when it
        moved meanwhile (a callback got there first).
        """
        if job.state not in PRESUMABLE or job.provider_guid is None:
            return None
        pages = job.pages
        if pages is None:
            pages = await asyncio.to_thread(self._own_pages, job)
        now = self._clock()
        notify = ending_report(
            job,
            JobState.PRESUMED_SENT,
            PRESUMED_SENT_REASON,
            pages=pages,
            provider_guid=job.provider_guid,
        )
        try:
            moved = await asyncio.to_thread(
                self._store.transition,
                job.id,
                JobState.PRESUMED_SENT,
                detail=f"{PRESUMED_SENT_REASON} ({evidence})",
                expect=job.state,
                notify=notify,
                data={"source": source, "guid": job.provider_guid, "evidence": evidence},
                now=now,
                reason=PRESUMED_SENT_REASON,
                next_poll_at=None,
                pages=pages,
            )
        except (StaleState, JobNotFound):
            return None
        metrics.outcomes.labels(state=JobState.PRESUMED_SENT.value, reason="removed").inc()
        log.warning(
            "job=%s %s -> presumed_sent guid=%s source=%s evidence=%r",
            job.id,
            job.state.value,
            job.provider_guid,
            source,
            evidence,
        )
        tell_progress(self._on_progress, moved)
        return moved

    def _own_pages(self, job: Job) -> int | None:
        """The pages faxgate counts in the job's documents (blocking: a thread), for a
        provider that reports none (v3)."""
        return own_page_count(self._store.documents(job.id), cover_page=has_cover(job))

    @staticmethod
    def _count(job: Job, report: Report, decision: Decision) -> None:
        if job.state in (JobState.SENT, JobState.FAILED):
            code = report.error.value if report.error else report.status.value
            if decision.move in (Move.CONFIRMED, Move.CORRECTED):
                code = f"late_{code}"  # after presumed_sent, which was counted then
            metrics.outcomes.labels(state=job.state.value, reason=code).inc()


def _code(tx: FaxReport) -> str:
    return tx.status_code.value if tx.status_code is not None else "unknown"


def _readable(kept: Iterable[UnmatchedReport]) -> list[FaxReport]:
    """The kept reports that read; one kept by a version that wrote it otherwise is no
    evidence."""
    reports = []
    for row in kept:
        try:
            reports.append(report_from_body(row.body))
        except (ValueError, TypeError):
            continue
    return reports
