"""The reconciler: settles jobs whose send's fate is unknown (left in `submitting` by an
ambiguous answer or a crash, or `uncertain` when a callback may be theirs) against the
provider's list of transmissions and the callbacks kept for GUIDs no job holds.

Its answers are reconcile's four (faxgate.domain.reconcile): found (submitted with that
GUID), not there (queued again, only where absence proves it), cannot tell (uncertain,
with a report; never sent on a guess), try later (looked at again after a backoff, or at
once when new evidence comes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

from pypdf import PdfReader

from faxgate import metrics
from faxgate.domain.codes import StatusCode, describe_status
from faxgate.domain.jobs import Document, Job, JobState
from faxgate.domain.provider import FaxPage, FaxReport, ProviderError
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
from faxgate.sending.moves import DispatchReport, SendingParts, has_cover
from faxgate.store import Share

log = logging.getLogger("faxgate.dispatcher")

# Reading the transmission list back further than this many pages is given up: the job is
# uncertain rather than the provider swamped.
MAX_LIST_PAGES: Final = 50
_AFTER_WINDOW: Final = timedelta(milliseconds=50)
# Orphans (another instance's jobs left in submitting) taken over in one cycle, at most.
ORPHANS_A_CYCLE: Final = 100

UNCERTAIN_REASON: Final = (
    "we could not tell whether the fax was sent ({why}); it was not sent again; "
    "check with the recipient and use `faxgate retry {job_id}` if it did not arrive"
)


@dataclass(frozen=True, slots=True)
class _Look:
    at: datetime
    tries: int


class Reconciler:
    def __init__(
        self,
        parts: SendingParts,
        *,
        window: Window,
        provider_removes: bool,
        unmatched: Callable[[], Awaitable[list[FaxReport]]] | None,
        callbacks_expected: bool,
        callback_retry_scale: float,
        share: Share | None = None,
    ) -> None:
        self._parts = parts
        # Sharing the store with other instances: only the jobs this one holds are its.
        self._share = share
        self._window = window
        self._looks: dict[str, _Look] = {}  # unresolved job id -> its next reconcile
        # The provider removes sent faxes: absence from its list proves nothing.
        self._provider_removes = provider_removes
        # Callbacks kept for GUIDs no job holds (the tracker's): evidence for reconciling.
        self._unmatched = unmatched
        self._new_evidence = unmatched is not None  # look at uncertain jobs once at start
        # Callbacks reach this faxgate (and are kept when no job holds their GUID yet).
        self._callbacks_expected = callbacks_expected and unmatched is not None
        self._started_at = parts.clock()  # callbacks were answered from (about) here on
        self._callback_retry_scale = callback_retry_scale

    def evidence_arrived(self) -> None:
        """A callback came for a GUID no job holds: look at every unresolved job now."""
        self._new_evidence = True
        self._looks = {
            job_id: _Look(self._parts.clock(), look.tries) for job_id, look in self._looks.items()
        }

    def next_looks(self) -> list[datetime]:
        """When the unresolved jobs are to be looked at again."""
        return [look.at for look in self._looks.values()]

    def submitting(self) -> list[Job]:
        """The jobs in `submitting` that are this dispatcher's to settle (blocking).

        Alone on the store: every one, since none has a request of this process in flight
        between cycles. Sharing it: those this instance holds, after taking over the
        orphans, jobs left in `submitting` by an instance whose lease ran out (it died, or
        stalled); another's live jobs may have their request on its way.
        """
        store = self._parts.store
        if self._share is None:
            return store.jobs_in_states([JobState.SUBMITTING])
        owner, lease = self._share.owner, self._share.lease
        orphans = store.claim_orphans(
            self._parts.clock(), ORPHANS_A_CYCLE, owner=owner, lease=lease
        )
        if orphans:
            log.warning(
                "taking over jobs=%d left in submitting by an instance whose lease ran out;"
                " reconciling them, never sending them again blindly ids=%s",
                len(orphans),
                ",".join(job.id for job in orphans),
            )
        return store.jobs_held(owner, [JobState.SUBMITTING])

    async def reconcile_due(self, report: DispatchReport) -> None:
        jobs = await asyncio.to_thread(self.submitting)
        present = {job.id for job in jobs}
        for gone in set(self._looks) - present:
            del self._looks[gone]
        now = self._parts.clock()
        due = [job for job in jobs if job.id not in self._looks or self._looks[job.id].at <= now]
        await self.reconcile(due, report)

    async def reconcile_uncertain(self, report: DispatchReport) -> None:
        """Uncertain jobs matched by a callback kept since: the only evidence that can
        still settle them (a person decides the rest)."""
        if not self._new_evidence or self._unmatched is None:
            return
        self._new_evidence = False
        reported = await self._unmatched()
        if not reported:
            return
        jobs = await asyncio.to_thread(self._parts.store.jobs_in_states, [JobState.UNCERTAIN])
        now = self._parts.clock()
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

    async def reconcile(self, jobs: Sequence[Job], report: DispatchReport) -> None:
        if not jobs:
            return
        sought = {job.id: await asyncio.to_thread(self._sought, job) for job in jobs}
        since = min(item.horizon(self._window) for item in sought.values())
        try:
            listing = await self._read_list(since)
            if self._unmatched is not None:
                listing = dataclasses.replace(listing, reported=await self._unmatched())
        except ProviderError as error:
            now = self._parts.clock()
            for job in jobs:
                self._look_later(job.id, now, f"the transmission list could not be read: {error}")
            report.unresolved += len(jobs)
            return
        for job in jobs:
            await self._settle(job.id, sought[job.id], listing, report)

    async def _read_list(self, since: datetime) -> Listing:
        """The transmission list, newest first, read just back past `since`."""
        listed_at = self._parts.clock()
        seen: list[FaxReport] = []
        page: FaxPage | None = await self._parts.provider.list_faxes(
            page_size=self._parts.polling.page_size
        )
        pages = 1
        complete = False
        while page is not None:
            seen.extend(page.faxes)
            if _reaches(page.faxes, since):
                break
            if page.next_page is None:
                complete = True
                break
            if not page.faxes or pages >= MAX_LIST_PAGES:
                break
            previous = page
            page = await self._parts.provider.next_page(page)
            pages += 1
            if page is not None and _not_after(page.page, previous.page):
                break  # a provider that does not advance: stop, read as far as it went
        return Listing(transmissions=seen, listed_at=listed_at, complete=complete)

    async def _settle(
        self, job_id: str, sought: Sought, listing: Listing, report: DispatchReport
    ) -> None:
        job = await asyncio.to_thread(self._parts.store.get_job, job_id)
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
        now = self._parts.clock()
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
        # A status nobody has published is read as still pending: polled for what follows.
        status = tx.status_code or StatusCode.PENDING
        first = self._parts.polling.first_interval
        # Its outcome (a kept callback for this GUID) is applied by the tracker's catch-up.
        moved = await self._parts.moves.move(
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
        moved = await self._parts.moves.move(
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
        moved = await self._parts.moves.end(
            job,
            JobState.UNCERTAIN,
            reason,
            expect=JobState.SUBMITTING,
            detail=f"could not tell whether the provider took the fax: {outcome.reason}",
            data={"reconciled": "cannot_tell"},
            now=now,
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
        delay = self._parts.backoff.delay(tries)
        if until is not None and now < until < now + delay:
            # The window closes sooner: look just after it, not a whole backoff later.
            delay = until - now + _AFTER_WINDOW
        self._looks[job_id] = _Look(now + delay, tries)
        log.info("unresolved job=%s why=%s next_look_in=%.1fs", job_id, why, delay.total_seconds())

    def _sought(self, job: Job) -> Sought:
        """What the provider's list can show of the job's call (blocking: a thread)."""
        documents = self._parts.store.documents(job.id)
        return Sought(
            job_id=job.id,
            to_number=job.to_number,
            # Set with submitting; a row edited by hand falls back to the last change.
            submitted_at=job.submitted_at or job.updated_at,
            document_pages=tuple(_count_pages(doc) for doc in documents),
            cover_page=has_cover(job),
        )

    def _claims(self, job: Job, sought: Sought, listing: Listing) -> tuple[set[str], list[Sought]]:
        """GUIDs in the list that are not this call's, and the rival jobs (a thread)."""
        earlier = set(_texts_in(event.data for event in self._parts.store.events(job.id)))
        claimed: set[str] = set()
        for tx in [*listing.transmissions, *listing.reported]:
            if tx.guid in claimed or not might_be_for(sought, tx, self._window):
                continue
            # Any job's call, now or before a retry, or this job's own earlier one.
            if tx.guid in earlier or self._parts.store.call_owner(tx.guid) is not None:
                claimed.add(tx.guid)
        rivals = [
            self._sought(other)
            for other in self._parts.store.jobs_in_states([JobState.SUBMITTING, JobState.UNCERTAIN])
            if other.id != job.id
            and other.provider_guid is None
            and other.to_number == job.to_number
        ]
        return claimed, rivals


def _count_pages(document: Document) -> int | None:
    """A PDF's page count; None for other kinds or a file that cannot be read."""
    path: Path = document.path
    if document.content_type != "application/pdf" and path.suffix.lower() != ".pdf":
        return None
    try:
        return len(PdfReader(path).pages)
    except Exception:  # any damage: the count is just unknown
        return None


def _reaches(transmissions: Iterable[FaxReport], since: datetime) -> bool:
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
