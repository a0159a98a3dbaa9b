"""What a report from the provider about a transmission means for its job.

Pure rules, no IO. The provider's reports arrive late, twice, and out of order (callbacks
are retried for hours, polls cross them), so a report only ever moves a job forward: a
status no further along than what the job has already seen changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from faxgate.domain.codes import (
    ErrorCode,
    StatusCode,
    describe_error,
    describe_outcome,
    describe_status,
    retry_class,
    status_rank,
)
from faxgate.domain.jobs import JobState, RetryPolicy

__all__ = [
    "PRESUMED_SENT_REASON",
    "Decision",
    "Move",
    "Report",
    "decide",
    "report_payload",
]


class Move(StrEnum):
    """What a report does to a job."""

    NOTHING = "nothing"  # stale, repeated or out of order
    SUBMITTED = "submitted"  # a job being reconciled turns out to be at the provider, pending
    TRANSMITTING = "transmitting"
    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"  # back to queued for another call, after a delay
    CONFIRMED = "confirmed"  # a late callback says S for a fax presumed sent
    CORRECTED = "corrected"  # a late callback says E or H for a fax presumed sent


_TARGETS: Final[Mapping[Move, JobState]] = {
    Move.SUBMITTED: JobState.SUBMITTED,
    Move.TRANSMITTING: JobState.TRANSMITTING,
    Move.SENT: JobState.SENT,
    Move.FAILED: JobState.FAILED,
    Move.RETRY: JobState.QUEUED,
    Move.CONFIRMED: JobState.SENT,
    Move.CORRECTED: JobState.FAILED,
}

# What a job presumed sent tells its owner: the provider shows no more of it, and only a
# fax that was sent is removed for certain (see docs/reliability.md).
PRESUMED_SENT_REASON: Final = (
    "sent, as far as the provider shows: it removed the fax, which it does once a fax is"
    " sent; no callback confirmed it"
)


@dataclass(frozen=True, slots=True)
class Report:
    """What the provider said about one transmission."""

    status: StatusCode
    error: ErrorCode | None = None
    pages: int | None = None  # pages billed, when the provider says


@dataclass(frozen=True, slots=True)
class Decision:
    move: Move
    reason: str  # plain words for people: the outcome, or why nothing happens
    retry_at: datetime | None = None  # the next call's not_before (RETRY only)

    @property
    def target(self) -> JobState | None:
        """The state the job moves to; None when nothing happens."""
        return _TARGETS.get(self.move)

    @property
    def ends_story(self) -> bool:
        """Whether this is the job's outcome, which owes its owner one report (a late
        failure of a fax presumed sent owes a second one: it corrects the first)."""
        return self.move in (Move.SENT, Move.FAILED, Move.CORRECTED)


# Where a job's state puts it in the provider's order P < T < S = E = H: the state, not
# the status column, says how far the job has moved (a job adopted by reconciliation may
# be submitted with a status of T). A job being reconciled (submitting, or uncertain) has
# seen nothing yet: any report moves it. Finished and queued jobs are not at the provider.
_STATE_RANKS: Final[Mapping[JobState, int]] = {
    JobState.SUBMITTING: -1,
    JobState.UNCERTAIN: -1,
    JobState.SUBMITTED: status_rank(StatusCode.PENDING),
    JobState.TRANSMITTING: status_rank(StatusCode.TRANSMITTING),
}


def decide(
    *,
    state: JobState,
    attempt: int,
    report: Report,
    policy: RetryPolicy,
    now: datetime,
) -> Decision:
    """What `report` does to a job in `state`, on its `attempt`-th call."""
    if state is JobState.PRESUMED_SENT:
        return _after_presumed(report)
    seen = _STATE_RANKS.get(state)
    if seen is None:
        return Decision(Move.NOTHING, f"the job is already {state.value}")
    reported = status_rank(report.status)
    if reported < seen:
        return Decision(Move.NOTHING, f"out of order: {report.status.value} after {state.value}")
    if reported == seen:
        return Decision(Move.NOTHING, f"repeated: {report.status.value}")

    match report.status:
        case StatusCode.PENDING:
            return Decision(Move.SUBMITTED, describe_status(StatusCode.PENDING))
        case StatusCode.TRANSMITTING:
            return Decision(Move.TRANSMITTING, describe_status(StatusCode.TRANSMITTING))
        case StatusCode.SENT:
            return Decision(Move.SENT, describe_status(StatusCode.SENT))
        case StatusCode.ON_HOLD:
            return Decision(Move.FAILED, describe_status(StatusCode.ON_HOLD))
        case StatusCode.ERROR:
            return _after_error(report.error, attempt, policy, now)


def _after_presumed(report: Report) -> Decision:
    """A real outcome, late, for a fax that ended presumed sent. Only a final status
    counts (a removed fax is no longer pending). A failure is told to the owner and is
    never called again on its own: hours may have passed, and a person decides."""
    match report.status:
        case StatusCode.SENT:
            return Decision(Move.CONFIRMED, "sent: a late callback confirmed it")
        case StatusCode.ERROR | StatusCode.ON_HOLD:
            failure = describe_outcome(report.status, report.error)
            return Decision(
                Move.CORRECTED,
                f"{failure}: the provider reported this late, after the fax was presumed"
                " sent; it was not sent again",
            )
        case _:
            return Decision(
                Move.NOTHING, f"out of order: {report.status.value} after presumed sent"
            )


def _after_error(
    error: ErrorCode | None, attempt: int, policy: RetryPolicy, now: datetime
) -> Decision:
    failure = describe_outcome(StatusCode.ERROR, error)
    kind = retry_class(error)
    if kind is None or error is None:
        return Decision(Move.FAILED, failure)
    delay = policy.next_try(kind, attempt)
    if delay is None:
        tries = "once" if attempt == 1 else f"{attempt} times"
        return Decision(Move.FAILED, f"{describe_error(error)} (called {tries})")
    retry_at = now + delay
    rule = policy.rule_for(kind)
    total = 1 + (rule.extra_tries if rule is not None else 0)
    return Decision(
        Move.RETRY,
        f"{describe_error(error)}; calling again after {_when(retry_at, delay)}"
        f" (call {attempt + 1} of {total})",
        retry_at=retry_at,
    )


def _when(at: datetime, delay: timedelta) -> str:
    minutes = round(delay.total_seconds() / 60)
    wait = f"{minutes} min" if minutes >= 1 else f"{round(delay.total_seconds())} s"
    return f"{at.astimezone(UTC).strftime('%H:%M')} UTC ({wait})"


def report_payload(
    *,
    job_id: str,
    state: JobState,
    reason: str,
    status_code: StatusCode | str | None,
    error_code: ErrorCode | str | None,
    pages: int | None,
    attempts: int,
    provider_guid: str | None,
) -> dict[str, Any]:
    """The payload of a "report" outbox row, as the notifier and reporters expect it."""
    return {
        "job_id": job_id,
        "state": state.value,
        "reason": reason,
        "status_code": None if status_code is None else str(status_code),
        "error_code": None if error_code is None else str(error_code),
        "pages": pages,
        "attempts": attempts,
        "provider_guid": provider_guid,
    }
