"""The tracker: applies what the provider reports about a transmission to its job.

Callbacks, polls and the dispatcher's reconciliation all hand their reports here, so the
rules of moving forward live in one place (faxgate.domain.outcomes) and every outcome
writes its report to the outbox in the same transaction as the move.

A callback can beat the dispatcher: the provider may report on a transmission before the
answer to the send that created it has been recorded. Such a report is kept (in memory,
for a while) and applied as soon as the dispatcher records that GUID (`catch_up`); should
the daemon stop meanwhile, the job's first poll finds the outcome instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from faxgate import metrics
from faxgate.domain.jobs import Job, JobState, RetryPolicy
from faxgate.domain.outcomes import (
    Decision,
    Move,
    Report,
    decide,
    report_payload,
)
from faxgate.hellofax.models import Transmission
from faxgate.store import JobNotFound, NewNotification, StaleState, Store, utc_now

__all__ = ["Source", "Tracker"]

log = logging.getLogger("faxgate.tracker")

Source = Literal["callback", "poll", "reconcile"]

# How long, and how many, reports for GUIDs no job has yet are kept for their send's answer.
EARLY_KEEP: Final = timedelta(minutes=5)
EARLY_MAX: Final = 10_000


class Tracker:
    def __init__(
        self,
        store: Store,
        retry_policy: RetryPolicy,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_progress: Callable[[Job], None] | None = None,
    ) -> None:
        self._store = store
        self._policy = retry_policy
        self._clock = clock
        self._on_progress = on_progress
        self._early: dict[str, list[tuple[Transmission, datetime]]] = {}  # oldest first
        self._catching_up: set[asyncio.Task[Job | None]] = set()

    async def observe(self, tx: Transmission, *, source: Source) -> Job | None:
        """Apply a report about an outbound transmission to its job.

        Returns the job as it stands afterwards (unchanged when the report was stale), or
        None when no job has this transmission (yet: a callback is kept for its send's
        answer). Store failures propagate: the caller must not acknowledge a report that
        was not recorded.
        """
        if tx.is_inbound:
            return None
        job = await self._observe(tx, source)
        if job is not None or source != "callback":
            return job
        self._keep_early(tx)
        # The send's answer may have been recorded while we looked.
        if await asyncio.to_thread(self._store.find_by_provider_guid, tx.guid) is not None:
            return await self._apply_early(tx.guid)
        return None

    def catch_up(self, job: Job) -> None:
        """A job just got its GUID: apply the reports that came for it first."""
        if job.provider_guid is None or job.provider_guid not in self._early:
            return
        task = asyncio.create_task(self._apply_early(job.provider_guid))
        self._catching_up.add(task)
        task.add_done_callback(self._caught_up)

    def _caught_up(self, task: asyncio.Task[Job | None]) -> None:
        self._catching_up.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Not lost: the job's polls read the same outcome from the provider.
            log.error("early report not applied error=%r", task.exception())

    def _keep_early(self, tx: Transmission) -> None:
        now = self._clock()
        for guid in list(self._early):  # oldest first: stop at the first one still fresh
            if len(self._early) < EARLY_MAX and now - self._early[guid][0][1] < EARLY_KEEP:
                break
            del self._early[guid]
        self._early.setdefault(tx.guid, []).append((tx, now))
        log.info(
            "report kept for its send's answer guid=%s status=%s", tx.guid, tx.status_code.value
        )

    async def _apply_early(self, guid: str) -> Job | None:
        job = None
        for tx, _kept_at in self._early.pop(guid, []):
            job = await self._observe(tx, "callback")
        return job

    async def _observe(self, tx: Transmission, source: Source) -> Job | None:
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
                policy=self._policy,
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
            self._count(moved, report)
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
            if self._on_progress is not None:
                try:
                    self._on_progress(moved)
                except Exception:
                    log.exception("progress callback failed job=%s", moved.id)
            return moved
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply(
        self,
        job: Job,
        tx: Transmission,
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

        if decision.move is Move.RETRY:
            # A new call gets a new transmission; the old GUID stays in the event.
            return self._store.transition(
                job.id,
                target,
                detail=decision.reason,
                expect=job.state,
                data=data,
                now=now,
                attempt=job.attempt + 1,
                not_before=decision.retry_at,
                provider_guid=None,
                provider_status=None,
                provider_error=None,
                pages=None,
                reason=decision.reason,
                next_poll_at=None,
                poll_interval=None,
            )
        if decision.ends_story:
            notify = NewNotification(
                kind="report",
                payload=report_payload(
                    job_id=job.id,
                    state=target,
                    reason=decision.reason,
                    status_code=status,
                    error_code=error,
                    pages=pages,
                    attempts=job.attempt,
                    provider_guid=tx.guid,
                ),
            )
            return self._store.transition(
                job.id,
                target,
                detail=decision.reason,
                expect=job.state,
                notify=notify,
                data=data,
                now=now,
                provider_status=status,
                provider_error=error,
                pages=pages,
                reason=decision.reason,
                next_poll_at=None,
            )
        # Still at the provider: a job reconciled from uncertain may have no poll planned.
        next_poll_at = job.next_poll_at if job.next_poll_at is not None else now
        return self._store.transition(
            job.id,
            target,
            detail=decision.reason,
            expect=job.state,
            data=data,
            now=now,
            provider_status=status,
            provider_error=None,
            pages=pages,
            reason=decision.reason,
            next_poll_at=next_poll_at,
        )

    @staticmethod
    def _count(job: Job, report: Report) -> None:
        if job.state in (JobState.SENT, JobState.FAILED):
            code = report.error.value if report.error else report.status.value
            metrics.outcomes.labels(state=job.state.value, reason=code).inc()
