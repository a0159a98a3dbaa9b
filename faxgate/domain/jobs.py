"""A fax job: its states, the moves allowed between them, retry policy and job ids.

Pure rules, no IO. The store enforces these rules on every state change; the dispatcher,
tracker and CLI ask them before they act.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from faxgate.domain.codes import RetryClass


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for the dispatcher (maybe until not_before)
    SUBMITTING = "submitting"  # committed just before the request to the provider leaves
    SUBMITTED = "submitted"  # the provider has it (status P)
    TRANSMITTING = "transmitting"  # the provider is dialling or sending (status T)
    SENT = "sent"
    # Sent as far as the provider shows: it removed the fax, which it does once a fax is
    # sent, and no callback confirmed it. A late callback still moves it to sent or failed.
    PRESUMED_SENT = "presumed_sent"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # the request may have left; a person must look
    CANCELLED = "cancelled"


class Intake(StrEnum):
    SMTP = "smtp"
    FOLDER = "folder"
    CLI = "cli"


class IllegalTransition(ValueError):
    """A state change the job's life does not allow."""

    def __init__(self, src: JobState, dst: JobState) -> None:
        super().__init__(f"a job cannot go from {src.value} to {dst.value}")
        self.src = src
        self.dst = dst


_S = JobState

TRANSITIONS: Final[Mapping[JobState, frozenset[JobState]]] = {
    _S.QUEUED: frozenset({_S.SUBMITTING, _S.CANCELLED, _S.FAILED}),
    _S.SUBMITTING: frozenset(
        {
            _S.SUBMITTED,
            _S.QUEUED,  # the request surely never left: try again later
            _S.FAILED,  # refused by the provider
            _S.UNCERTAIN,  # may have left, and reconciling could not tell
            _S.TRANSMITTING,  # reconciled against the provider's list
            _S.SENT,  # reconciled against the provider's list
        }
    ),
    _S.SUBMITTED: frozenset({_S.TRANSMITTING, _S.SENT, _S.FAILED, _S.QUEUED, _S.PRESUMED_SENT}),
    _S.TRANSMITTING: frozenset({_S.SENT, _S.FAILED, _S.QUEUED, _S.PRESUMED_SENT}),
    _S.PRESUMED_SENT: frozenset(
        {
            _S.SENT,  # a late callback confirmed it
            _S.FAILED,  # a late callback said it failed: never sent again on its own
            _S.QUEUED,  # a person said: send it again
        }
    ),
    _S.UNCERTAIN: frozenset(
        {
            _S.SUBMITTED,  # reconciled later
            _S.TRANSMITTING,
            _S.SENT,
            _S.FAILED,
            _S.QUEUED,  # a person said: send it again
            _S.CANCELLED,
        }
    ),
    _S.FAILED: frozenset({_S.QUEUED}),  # a person said: send it again
    _S.SENT: frozenset(),
    _S.CANCELLED: frozenset(),
}

# The provider may be working on the job: it must not be submitted again.
ACTIVE_STATES: Final = frozenset({_S.SUBMITTING, _S.SUBMITTED, _S.TRANSMITTING})
# No way out.
FINAL_STATES: Final = frozenset(s for s, targets in TRANSITIONS.items() if not targets)
# An outcome was reached (failed can still be retried by a person); finished_at is set.
FINISHED_STATES: Final = frozenset({_S.SENT, _S.PRESUMED_SENT, _S.FAILED, _S.CANCELLED})


def check_transition(src: JobState, dst: JobState) -> None:
    """Raise IllegalTransition unless a job may move from src to dst."""
    if dst not in TRANSITIONS[src]:
        raise IllegalTransition(src, dst)


def is_final(state: JobState) -> bool:
    return state in FINAL_STATES


def can_retry(state: JobState) -> bool:
    """May a person send this job again?"""
    return state in (_S.FAILED, _S.UNCERTAIN, _S.PRESUMED_SENT)


def can_cancel(state: JobState) -> bool:
    """May a person cancel this job? Not while the provider has it, nor once it is done."""
    return state in (_S.QUEUED, _S.UNCERTAIN)


# ---------------------------------------------------------------------------- retries


@dataclass(frozen=True, slots=True)
class RetryRule:
    extra_tries: int  # beyond the first call
    delay: timedelta  # between one call's end and the next call

    def __post_init__(self) -> None:
        if self.extra_tries < 0:
            raise ValueError("extra_tries must not be negative")
        if self.delay < timedelta(0):
            raise ValueError("delay must not be negative")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how far apart, a call is tried again after a busy line or no answer."""

    busy: RetryRule = RetryRule(extra_tries=3, delay=timedelta(minutes=5))
    no_answer: RetryRule = RetryRule(extra_tries=1, delay=timedelta(minutes=10))

    def rule_for(self, retry_class: str) -> RetryRule | None:
        match retry_class:
            case RetryClass.BUSY:
                return self.busy
            case RetryClass.NO_ANSWER:
                return self.no_answer
            case _:
                return None

    def next_try(self, retry_class: str, tries_so_far: int) -> timedelta | None:
        """The delay before the next call, or None when no call is left.

        `tries_so_far` counts the calls already made, the one that just failed included
        (a job's `attempt`). An unknown retry class is never retried.
        """
        rule = self.rule_for(retry_class)
        if rule is None or tries_so_far > rule.extra_tries:
            return None
        return rule.delay


def job_source(intake: str, intake_ref: Mapping[str, object]) -> str | None:
    """Who a job counts against for limits per sender: its mail sender (lower case), or
    "folder:" and its hot folder's path; None for a fax sent from the command line."""
    sender = intake_ref.get("sender")
    if intake == "smtp" and isinstance(sender, str) and sender:
        return sender.lower()
    folder = intake_ref.get("folder")
    if intake == "folder" and isinstance(folder, str) and folder:
        return f"folder:{folder}"
    return None


# Why queued jobs wait, for the metrics: a rule's window or limit, a call tried again later
# (busy, no answer, a provider fault), their number's turn, or rules that could not judge.
WAIT_KINDS: Final = ("hours", "sender_limit", "retry", "turn", "error")

# What a job may ask for itself; rules add their own.
PRIORITIES: Final[Mapping[str, int]] = {"urgent": 1, "normal": 0, "bulk": -1}


def why_waiting(job: Job, now: datetime, *, ahead: int, per_number: int | None) -> str | None:
    """Why a queued job is not sent yet, in plain words; None when nothing holds it
    (the dispatcher takes it at its next cycle, the provider's room allowing).
    `ahead`: the faxes before it in its number's line, those in flight included."""
    if job.state is not JobState.QUEUED:
        return None
    if job.not_before is not None and job.not_before > now:
        if job.wait_reason:
            return job.wait_reason
        then = job.not_before.astimezone().strftime("%H:%M")
        return f"waiting to call again at {then}" + (f" ({job.reason})" if job.reason else "")
    if per_number is not None and ahead >= per_number:
        return f"behind {ahead} fax{'es' if ahead > 1 else ''} to this number"
    return None


def priority_named(text: str | None) -> int | None:
    """A priority as people write it: "urgent", "bulk", "normal", "high", "low", or a mail
    X-Priority number (1-2 urgent, 3 normal, 4-5 bulk); None when it names none."""
    if not text:
        return None
    word = text.strip().lower().split(maxsplit=1)[0] if text.strip() else ""
    word = word.strip("()[]:,;")
    if word in PRIORITIES:
        return PRIORITIES[word]
    if word in ("high", "highest", "emergency", "1", "2"):
        return 1
    if word in ("low", "lowest", "non-urgent", "4", "5", "list", "junk"):
        return -1
    if word == "3":
        return 0
    return None


# The headers a mail client marks a message's priority with, most explicit first.
PRIORITY_HEADERS: Final = ("priority", "x-priority", "importance")


def mail_priority(headers: Mapping[str, str], subject: str | None) -> int:
    """A message's priority: a subject tag ("[urgent]", "[bulk]") first, then the
    Priority, X-Priority and Importance headers; normal without one."""
    if subject:
        lowered = subject.lower()
        for name, value in PRIORITIES.items():
            if f"[{name}]" in lowered:
                return value
    for header in PRIORITY_HEADERS:
        named = priority_named(headers.get(header))
        if named is not None:
            return named
    return 0


# ---------------------------------------------------------------------------- job ids

# Crockford's base32, lower case: no i, l, o, u, so an id read aloud or typed is unambiguous.
JOB_ID_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"
_TIME_CHARS: Final = 7  # Unix seconds: enough until the year 3058
_RANDOM_CHARS: Final = 5  # 25 random bits tell apart the jobs of one second
JOB_ID_LENGTH: Final = _TIME_CHARS + _RANDOM_CHARS
_CONFUSABLE: Final = str.maketrans({"i": "1", "l": "1", "o": "0", "-": None, " ": None})


def _base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 32)
        chars.append(JOB_ID_ALPHABET[digit])
    if value:
        raise ValueError("value too large for its width")
    return "".join(reversed(chars))


def new_job_id(now: datetime, rand: Callable[[int], int] = secrets.randbits) -> str:
    """A 12-character id: creation second, then random; ids sort by creation second.

    `rand(bits)` returns a non-negative integer of at most `bits` bits.
    """
    seconds = int(now.timestamp())
    if seconds < 0:
        raise ValueError("job ids start at 1970")
    random_part = rand(5 * _RANDOM_CHARS)
    return _base32(seconds, _TIME_CHARS) + _base32(random_part, _RANDOM_CHARS)


def normalize_job_id(text: str) -> str:
    """The job id a person meant: case, dashes and spaces ignored, i/l read as 1, o as 0."""
    candidate = text.strip().lower().translate(_CONFUSABLE)
    if len(candidate) != JOB_ID_LENGTH or any(c not in JOB_ID_ALPHABET for c in candidate):
        raise ValueError(f"not a job id: {text!r}")
    return candidate


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Job:
    """One fax to one number, as the store keeps it."""

    id: str
    created_at: datetime
    updated_at: datetime
    state: JobState
    intake: Intake
    to_number: str  # E.164
    intake_ref: Mapping[str, Any] = field(default_factory=dict)  # message-id, file path...
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reply_to: str | None = None  # where the report goes
    attempt: int = 1  # calls tried so far, this one included
    not_before: datetime | None = None
    provider_guid: str | None = None
    provider_status: str | None = None
    provider_error: str | None = None
    pages: int | None = None
    reason: str | None = None  # plain words for people
    next_poll_at: datetime | None = None
    poll_interval: timedelta | None = None
    submitted_at: datetime | None = None
    finished_at: datetime | None = None
    group_id: str | None = None  # jobs from one message or drop share it
    priority: int = 0  # higher goes first: urgent 1, normal 0, bulk -1
    wait_kind: str | None = None  # why a rule holds it back: "hours", "sender_limit"
    wait_reason: str | None = None  # the same in plain words, for people


@dataclass(frozen=True, slots=True)
class Document:
    job_id: str
    seq: int  # order within the fax, from 0
    name: str  # for people: the attachment's or file's own name
    path: Path  # in the spool
    size: int
    sha256: str
    content_type: str
    # When [retention] documents removed it (its file, and on PostgreSQL its bytes).
    removed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    job_id: str
    at: datetime
    from_state: JobState | None  # None when the job was created
    to_state: JobState
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    job_id: str | None
    created_at: datetime
    kind: str
    payload: Mapping[str, Any]
    attempts: int = 0
    next_attempt_at: datetime | None = None  # None: given up
    delivered_at: datetime | None = None
    last_error: str | None = None
