"""The submitter: one job's steps in order, and what each answer of the provider does.

Documents checked, `submitting` committed with `submitted_at` BEFORE the request leaves,
the request, its answer recorded: submitted with the GUID; queued again after a backoff
(not sent, a provider fault); queued again and sends paused (429, a refused account);
failed with its report (another refusal); or handed back for reconciling (ambiguous).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from faxgate import metrics
from faxgate.domain.codes import StatusCode, describe_status
from faxgate.domain.jobs import Job, JobState
from faxgate.domain.numbers import FaxNumber
from faxgate.domain.provider import (
    Ambiguous,
    BadResponse,
    FaxReport,
    NotSent,
    OutgoingFax,
    ProviderError,
    ProviderFault,
    RateLimited,
    Refused,
    Upload,
)
from faxgate.sending.moves import DispatchReport, SendingParts, has_cover
from faxgate.sending.pause import PauseGate
from faxgate.settings import DispatchSettings

log = logging.getLogger("faxgate.dispatcher")

# Requests to the provider at once: enough that a backlog does not go one by one, few
# enough to be polite (the client keeps at most 10 connections).
CONCURRENCY: Final = 6
# Refusals that concern the account, not the fax: every fax would be refused alike (402:
# v3's "payment required").
ACCOUNT_REFUSALS: Final = frozenset({401, 402, 403, 404})
# Errors of `client.send` raised before a byte is sent: a file that cannot be opened, a
# request that cannot be built.
_BEFORE_SENDING: Final = (FileNotFoundError, IsADirectoryError, PermissionError, ValueError)


@dataclass(frozen=True, slots=True)
class _Ready:
    digits: str
    uploads: list[Upload]


class Submitter:
    def __init__(
        self,
        parts: SendingParts,
        gate: PauseGate,
        *,
        settings: DispatchSettings,
        first_poll: timedelta,
    ) -> None:
        self._parts = parts
        self._gate = gate
        self._settings = settings
        self._first_poll = first_poll
        self._retry_times: list[datetime] = []  # a heap of the not_before times it set

    def next_retry(self) -> datetime | None:
        """The earliest time it queued a job again for (a heap of them)."""
        return self._retry_times[0] if self._retry_times else None

    def forget_retries_due(self, now: datetime) -> None:
        """Retries due by `now` are the cycle's to take (or wait for room or the pause)."""
        while self._retry_times and self._retry_times[0] <= now:
            heapq.heappop(self._retry_times)

    async def submit_all(
        self, jobs: Sequence[Job], report: DispatchReport, stopping: Callable[[], bool]
    ) -> list[Job]:
        """Submit the jobs, a few at once; returns those whose answer was ambiguous."""
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(job: Job) -> Job | None:
            async with slots:
                if self._gate.closed or stopping():  # asked to stop meanwhile
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
        now = self._parts.clock()
        submitting = await self._parts.moves.move(
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
            sent = await self._parts.provider.send(
                OutgoingFax(
                    ready.digits,
                    ready.uploads,
                    from_line=job.from_line,
                    cover_to=job.cover_to,
                    cover_from=job.cover_from,
                    cover_message=job.cover_message,
                    reference=job.id,
                )
            )
        except RateLimited as error:
            await self._rate_limited(submitting, error, report)
        except Refused as error:
            await self._refused(submitting, error, report)
        except (Ambiguous, BadResponse) as error:
            return self._ambiguous(submitting, error, report)
        except (NotSent, ProviderFault) as error:
            await self._not_sent(submitting, error, report)
        except ProviderError as error:  # a kind this code does not know: assume the worst
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
            await self._submitted(submitting, sent, report)
        return None

    def _ready(self, job: Job) -> _Ready | str:
        """The request's parts, or why the job cannot be sent at all (blocking: a thread)."""
        documents = self._parts.store.documents(job.id)
        missing = [doc.name for doc in documents if not doc.path.is_file()]
        if missing:
            which = ", ".join(missing)
            verb = "is" if len(missing) == 1 else "are"
            return f"the document {which} {verb} no longer in the spool; nothing was sent"
        if not documents and not has_cover(job):
            return "the job has no documents and no cover page; nothing was sent"
        try:
            digits = FaxNumber(job.to_number, None).provider_digits
        except ValueError:
            return f"{job.to_number!r} is not an international fax number; nothing was sent"
        uploads = [Upload(doc.name, doc.path, doc.content_type) for doc in documents]
        return _Ready(digits, uploads)

    async def _submitted(self, job: Job, tx: FaxReport, report: DispatchReport) -> None:
        # The provider took it; a status it has not published yet still means pending.
        status = tx.status_code or StatusCode.PENDING
        now = self._parts.clock()
        first = self._first_poll
        moved = await self._parts.moves.move(
            job.id,
            JobState.SUBMITTED,
            expect=JobState.SUBMITTING,
            detail=f"the provider took the fax as {tx.guid}",
            data={"guid": tx.guid, "status": status.value},
            now=now,
            provider_guid=tx.guid,
            provider_status=status.value,
            provider_error=None,
            next_poll_at=now + first,
            poll_interval=self._parts.polling.first_interval,
            reason=describe_status(status),
        )
        self._gate.answered()
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
            status.value,
        )

    async def _not_sent(self, job: Job, error: ProviderError, report: DispatchReport) -> None:
        self._gate.fault()
        failures = await asyncio.to_thread(self._submit_failures, job.id) + 1
        delay = self._parts.backoff.delay(failures)
        now = self._parts.clock()
        retry_at = now + delay
        reason = (
            f"the provider could not take the fax ({error}); "
            f"trying again at {_clock_time(retry_at)}"
        )
        requeued = await self._requeue(
            job,
            report,
            detail=reason,
            data={
                "submit_failures": failures,
                "retry_in": delay.total_seconds(),
                "error": type(error).__name__,
                "http_status": error.status,
            },
            now=now,
            reason=reason,
            not_before=retry_at,
        )
        metrics.submissions.labels(result="retry").inc()
        if requeued:
            heapq.heappush(self._retry_times, retry_at)
        log.warning(
            "not sent job=%s failures=%d retry_in=%.1fs error=%s",
            job.id,
            failures,
            delay.total_seconds(),
            error,
        )
        self._gate.after_fault()

    async def _rate_limited(self, job: Job, error: RateLimited, report: DispatchReport) -> None:
        await self._requeue(
            job,
            report,
            detail="the provider is limiting the rate (429); not sent; sends paused",
            data={"rate_limited": True, "http_status": error.status},
            now=self._parts.clock(),
            reason="waiting: the provider has too many faxes pending",
        )
        metrics.submissions.labels(result="rate_limited").inc()
        report.rate_limited = True
        length = self._gate.rate_limit_length(error.retry_after)
        log.warning("rate limited job=%s pause=%.1fs", job.id, length.total_seconds())
        self._gate.pause_for("rate_limited", length)

    async def _refused(self, job: Job, error: Refused, report: DispatchReport) -> None:
        metrics.submissions.labels(result="refused").inc()
        if error.status in ACCOUNT_REFUSALS:
            await self._requeue(
                job,
                report,
                detail=f"the provider refused the account ({error}); not sent; sends paused",
                data={"account_refused": True, "http_status": error.status},
                now=self._parts.clock(),
                reason=f"waiting: {error}",
            )
            log.error("account refused job=%s error=%s; check the provider settings", job.id, error)
            self._gate.pause_for("account", self._settings.backoff_max)
            return
        self._gate.answered()
        await self._fail(job, str(error), expect=JobState.SUBMITTING, report=report, code="refused")

    async def _requeue(
        self,
        job: Job,
        report: DispatchReport,
        *,
        detail: str,
        data: Mapping[str, object],
        now: datetime,
        reason: str,
        **fields: object,
    ) -> bool:
        """Back to the queue, not sent, and counted so; False when someone else moved the
        job first."""
        moved = await self._parts.moves.move(
            job.id,
            JobState.QUEUED,
            expect=JobState.SUBMITTING,
            detail=detail,
            now=now,
            notify=None,  # back in the queue: nobody is told yet
            data=data,
            reason=reason,
            **fields,
        )
        if moved is None:
            return False
        report.requeued += 1
        return True

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
        moved = await self._parts.moves.end(
            job,
            JobState.FAILED,
            reason,
            expect=expect,
            detail=reason,
            data={"cause": code},
            now=self._parts.clock(),
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
        for event in reversed(self._parts.store.events(job_id)):
            if event.to_state is JobState.QUEUED:
                value = event.data.get("submit_failures")
                return value if isinstance(value, int) else 0
        return 0


def _clock_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")
