"""What a dispatch cycle does to jobs: one transition at a time (a job someone else moved
first is left alone), the report a job that ends owes, and the cycle's tally."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from faxgate.domain.backoff import Backoff
from faxgate.domain.jobs import Job, JobState
from faxgate.domain.outcomes import report_payload
from faxgate.domain.provider import FaxProvider
from faxgate.settings import PollingSettings
from faxgate.store import JobNotFound, NewNotification, StaleState, Store

log = logging.getLogger("faxgate.dispatcher")


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
    waiting: int = 0  # held back by a sending rule until a later moment
    rate_limited: bool = False
    paused: bool = False  # sends were paused when the cycle began

    @property
    def more_may_be_due(self) -> bool:
        """The cycle took all it was allowed to: another may find more at once."""
        return self.limit > 0 and self.picked >= self.limit and not self.held


@dataclass(frozen=True, slots=True)
class SendingParts:
    """What the submitter and the reconciler share: where jobs live and how they move,
    the provider, the poll settings, the backoff after failures and the clock."""

    store: Store
    provider: FaxProvider
    moves: JobMoves
    polling: PollingSettings
    backoff: Backoff
    clock: Callable[[], datetime]


class JobMoves:
    """Moves jobs in the store and tells whoever follows their progress (the web's
    waiting requests, the hot folders' status files)."""

    def __init__(self, store: Store, on_progress: Callable[[Job], None] | None = None) -> None:
        self._store = store
        self._on_progress = on_progress

    async def move(
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
        tell_progress(self._on_progress, moved)
        return moved

    async def end(
        self,
        job: Job,
        to: JobState,
        reason: str,
        *,
        expect: JobState,
        detail: str,
        now: datetime,
        data: Mapping[str, Any] | None = None,
        **fields: object,
    ) -> Job | None:
        """A move to an ending state, with the report it owes and its reason on the job."""
        return await self.move(
            job.id,
            to,
            expect=expect,
            detail=detail,
            now=now,
            notify=ending_report(job, to, reason),
            data=data,
            reason=reason,
            **fields,
        )


def tell_progress(on_progress: Callable[[Job], None] | None, job: Job) -> None:
    """Tell whoever follows a job's progress; their failure is theirs, never the move's."""
    if on_progress is not None:
        try:
            on_progress(job)
        except Exception:
            log.exception("progress callback failed job=%s", job.id)


def ending_report(
    job: Job,
    state: JobState,
    reason: str,
    *,
    status_code: str | None = None,
    error_code: str | None = None,
    pages: int | None = None,
    provider_guid: str | None = None,
) -> NewNotification:
    """The report a job that ends here owes its owner (written with the move); `pages`
    defaults to the job's."""
    return NewNotification(
        kind="report",
        payload=report_payload(
            job_id=job.id,
            state=state,
            reason=reason,
            status_code=status_code,
            error_code=error_code,
            pages=job.pages if pages is None else pages,
            attempts=job.attempt,
            provider_guid=provider_guid,
        ),
    )


def has_cover(job: Job) -> bool:
    return any((job.cover_to, job.cover_from, job.cover_message))
