"""What callers hand the store and what it raises."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from faxgate.domain.jobs import Intake, JobState
from faxgate.store.spool import SpooledFile

DEFAULT_BUSY_TIMEOUT: Final = 5.0  # seconds


@dataclass(frozen=True, slots=True)
class UnmatchedReport:
    """A callback for a GUID no job held when it came (the provider's object in `body`)."""

    guid: str
    status: str
    received_at: datetime
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Lease:
    """Who has claimed a job, and until when."""

    owner: str
    until: datetime


class StoreError(Exception):
    pass


class SchemaTooNew(StoreError):
    """The file was written by a newer faxgate: refuse rather than guess."""


class JobNotFound(StoreError, LookupError):
    pass


class DocumentsRemoved(StoreError):
    """The job's documents were removed ([retention] documents): it cannot be sent again."""

    def __init__(self, job_id: str, removed_at: datetime) -> None:
        super().__init__(f"the documents of job {job_id} were removed on {removed_at:%Y-%m-%d}")
        self.job_id = job_id
        self.removed_at = removed_at


class StaleState(StoreError):
    """The job is no longer in the state the caller saw: someone else moved it."""

    def __init__(self, job_id: str, expected: Collection[JobState], actual: JobState) -> None:
        wanted = " or ".join(sorted(s.value for s in expected))
        super().__init__(f"job {job_id} is {actual.value}, not {wanted}")
        self.job_id = job_id
        self.expected = frozenset(expected)
        self.actual = actual


# ------------------------------------------------------------------ what callers hand in


@dataclass(frozen=True, slots=True)
class NewDocument:
    name: str  # display name
    file: SpooledFile
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job as intake hands it over; the store gives it an id and starts it queued."""

    to_number: str
    intake: Intake
    documents: Sequence[NewDocument | tuple[str, SpooledFile, str]] = ()
    intake_ref: Mapping[str, Any] = field(default_factory=dict)
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reply_to: str | None = None
    group_id: str | None = None
    not_before: datetime | None = None
    priority: int = 0  # urgent 1, normal 0, bulk -1


@dataclass(frozen=True, slots=True, kw_only=True)
class NewNotification:
    kind: str = "report"
    payload: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None  # set by `transition` to the job it belongs to
    next_attempt_at: datetime | None = None  # None: at once
