"""Document retention: when the documents of a finished fax may be removed. Pure.

faxgate keeps a job's documents (and a mailed job's .eml) and an inbound fax's document
only as long as [retention] documents says, counted from when the job ended or the fax
arrived. The job's row, its events and its notifications stay: the history remains, the
contents go.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from faxgate.domain.jobs import FINISHED_STATES, JobState

# A job whose documents may go: it reached an outcome that nothing retries on its own (a
# person may still send a failed or presumed-sent fax again while its documents last).
# Never uncertain: a person must look at it, with its documents.
REMOVABLE_STATES: Final = FINISHED_STATES


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What the rule needs of a job."""

    state: JobState
    finished_at: datetime | None
    notifications_pending: int  # outbox rows of the job not yet delivered


@dataclass(frozen=True, slots=True)
class InboundFacts:
    """What the rule needs of an inbound fax."""

    received_at: datetime
    deliveries_pending: int  # deliveries it owes not yet done


def cutoff(now: datetime, keep: timedelta) -> datetime:
    """What ended before this may have its documents removed."""
    return now - keep


def job_documents_may_go(job: JobFacts, now: datetime, keep: timedelta | None) -> bool:
    """Whether a job's documents may be removed: kept forever when `keep` is None."""
    if keep is None or job.finished_at is None:
        return False
    return (
        job.state in REMOVABLE_STATES
        and job.finished_at < cutoff(now, keep)
        # A confirmation report draws the first page from the document.
        and job.notifications_pending == 0
    )


def inbound_document_may_go(fax: InboundFacts, now: datetime, keep: timedelta | None) -> bool:
    """Whether an inbound fax's document may be removed: every delivery it owes is done."""
    if keep is None:
        return False
    return fax.deliveries_pending == 0 and fax.received_at < cutoff(now, keep)


def removed_words(
    removed_at: datetime, kept: timedelta | None, *, subject: str = "its documents were"
) -> str:
    """Why a document cannot be read any more, for people; `kept`: the setting then, when
    known."""
    when = removed_at.strftime("%Y-%m-%d")
    if kept is None:
        return f"{subject} removed on {when} ([retention] documents)"
    days = kept.total_seconds() / 86400
    after = f"{days:g} days" if days != 1 else "1 day"
    return f"{subject} removed on {when} after {after} ([retention] documents)"
