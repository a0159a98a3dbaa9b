"""The default report mail: what became of a fax, in plain words. Pure: no IO.

The outcome is read from the report's payload (written with the outcome, in the same
transaction), not from the job as it is now: a person may have retried the job since.
The job's fields fill in what the payload lacks. The mailer adds From, Date and Message-ID.

The depth aimed at is HylaFAX's notices: the number, the outcome and its reason, the pages,
every try with its time and result, and what to do next.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final

from faxgate.domain.autoreply import AUTO_GENERATED, AUTO_REPLIED
from faxgate.domain.codes import describe_outcome, parse_error_code, parse_status_code
from faxgate.domain.jobs import ACTIVE_STATES, Document, Event, Job, JobState
from faxgate.domain.numbers import display_number
from faxgate.domain.outcomes import PRESUMED_SENT_REASON

_WIDTH: Final = 72
# States that close one call: the provider is done with it, or faxgate let go of it.
_CALL_ENDS: Final = frozenset(
    {
        JobState.QUEUED,
        JobState.SENT,
        JobState.PRESUMED_SENT,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.UNCERTAIN,
    }
)
_FALLBACK_REASONS: Final[Mapping[JobState, str]] = {
    JobState.SENT: "the fax was sent",
    JobState.PRESUMED_SENT: PRESUMED_SENT_REASON,
    JobState.FAILED: "the fax could not be sent",
    JobState.UNCERTAIN: "the provider's answer was lost",
    JobState.CANCELLED: "the fax was cancelled",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The facts a report tells, from the payload with the job's fields as fallback."""

    state: JobState
    reason: str
    pages: int | None
    attempts: int
    provider_guid: str | None
    at: datetime | None  # when the outcome was reached


@dataclass(frozen=True, slots=True)
class Call:
    """One call to the number: from `submitting` to the event that ended it."""

    number: int  # from 1
    started_at: datetime
    ended: Event | None  # None: no outcome recorded yet


def compose_report(
    job: Job,
    documents: Sequence[Document],
    events: Sequence[Event],
    payload: Mapping[str, Any],
) -> EmailMessage:
    """The report mail to job.reply_to; raises ValueError when the job has none."""
    if not job.reply_to:
        raise ValueError(f"job {job.id} has no reply address")
    outcome = read_outcome(job, events, payload)
    message = EmailMessage()
    message["To"] = job.reply_to
    message["Subject"] = report_subject(job, outcome)
    original = _message_id(job.intake_ref.get("message_id"))
    # RFC 3834: a report answering a message is a reply; one for a command is not.
    message["Auto-Submitted"] = AUTO_REPLIED if original else AUTO_GENERATED
    if original:
        message["In-Reply-To"] = original
        message["References"] = original
    message["X-Faxgate-Job"] = job.id
    message["X-Faxgate-Outcome"] = outcome.state.value
    message.set_content(report_body(job, documents, calls(events), outcome))
    return message


def read_outcome(job: Job, events: Sequence[Event], payload: Mapping[str, Any]) -> Outcome:
    state = _state(payload.get("state"), job.state)
    attempts = _positive_int(payload.get("attempts")) or job.attempt
    at = next((e.at for e in reversed(events) if e.to_state is state), None)
    return Outcome(
        state=state,
        reason=_reason(payload, job, state),
        pages=_positive_int(payload.get("pages")) or job.pages,
        attempts=attempts,
        provider_guid=_text(payload.get("provider_guid")) or job.provider_guid,
        at=at or job.finished_at,
    )


def report_subject(job: Job, outcome: Outcome) -> str:
    number = display_number(job.to_number)
    match outcome.state:
        case JobState.SENT:
            pages = f" ({_count(outcome.pages, 'page')})" if outcome.pages else ""
            return f"Fax to {number} sent{pages}"
        case JobState.FAILED:
            tries = f" ({_count(outcome.attempts, 'try', 'tries')})" if outcome.attempts > 1 else ""
            return f"Fax to {number} failed: {_short(outcome.reason)}{tries}"
        case JobState.UNCERTAIN:
            return f"Fax to {number}: not sure it was sent"
        case JobState.PRESUMED_SENT:
            return f"Fax to {number} presumably sent (not confirmed)"
        case JobState.CANCELLED:
            return f"Fax to {number} cancelled"
        case _:
            return f"Fax to {number}: {outcome.state.value}"


def report_body(job: Job, documents: Sequence[Document], tries: Sequence[Call], o: Outcome) -> str:
    number = display_number(job.to_number)
    parts = [_opening(number, o)]
    facts: list[tuple[str, str | None]] = [
        ("Number", number),
        ("Outcome", o.state.value),
        ("Reason", None if o.state is JobState.SENT else o.reason),
        ("Pages", str(o.pages) if o.pages else None),
        ("Tries", str(o.attempts)),
        ("Documents", ", ".join(d.name for d in documents) or None),
        ("Cover page to", job.cover_to),
        ("Queued", _time(job.created_at)),
        ("First call", _time(tries[0].started_at) if tries else _opt_time(job.submitted_at)),
        ("Outcome at", _opt_time(o.at)),
        ("Job", job.id),
        ("Provider ID", o.provider_guid),
    ]
    parts.append(_table(facts))
    if tries:
        parts.append("Tries, one by one:\n" + "\n".join(_call_line(call) for call in tries))
    parts.extend(_next_steps(job, o))
    return "\n\n".join(parts) + "\n\n-- \nfaxgate\n"


# ---------------------------------------------------------------------------- calls


def calls(events: Sequence[Event]) -> list[Call]:
    """The calls made, from the job's events in order.

    A call starts when the job enters `submitting`. One that went straight back to
    `queued` never reached the provider (a connection error) and is no call. An
    `uncertain` end may still be settled by a later event, which then ends the call.
    """
    found: list[Call] = []
    start: Event | None = None
    end: Event | None = None
    reached_provider = False

    def close() -> None:
        if start is not None and (reached_provider or end is not None):
            found.append(Call(len(found) + 1, start.at, end))

    for event in events:
        if event.to_state is JobState.SUBMITTING:
            close()
            start, end, reached_provider = event, None, False
        elif start is None:
            continue
        elif event.to_state in ACTIVE_STATES:
            reached_provider = True
        elif event.to_state in _CALL_ENDS and (end is None or end.to_state is JobState.UNCERTAIN):
            if event.to_state is JobState.QUEUED and not reached_provider and end is None:
                start = None  # the request never left: not a call
                continue
            end = event
    close()
    return found


def _call_line(call: Call) -> str:
    if call.ended is None:
        result = "no outcome recorded"
    else:
        result = _one_line(call.ended.detail) or call.ended.to_state.value
    line = _fill(f"  {call.number}. {_time(call.started_at)}  {result}", indent="     ")
    guid = _text(call.ended.data.get("provider_guid")) if call.ended else None
    return line + (f"\n     provider ID {guid}" if guid else "")


def _fill(text: str, *, keep: str = "", indent: str = "") -> str:
    """Wrap to the width, never inside `keep` (a number such as "+1 415-555-0100")."""
    glued = keep.replace(" ", "\N{NO-BREAK SPACE}")
    if keep:
        text = text.replace(keep, glued)
    wrapped = textwrap.fill(
        text, _WIDTH, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False
    )
    return wrapped.replace("\N{NO-BREAK SPACE}", " ")


# ---------------------------------------------------------------------------- wording


def _opening(number: str, o: Outcome) -> str:
    match o.state:
        case JobState.SENT:
            pages = f" ({_count(o.pages, 'page')})" if o.pages else ""
            tries = "" if o.attempts <= 1 else f", on try {o.attempts}"
            text = f"Your fax to {number} was sent{pages}{tries}."
        case JobState.FAILED:
            text = f"Your fax to {number} could not be sent: {o.reason}."
            if o.attempts > 1:
                text += f" faxgate tried {o.attempts} times and has given up."
        case JobState.UNCERTAIN:
            text = (
                f"faxgate cannot tell whether your fax to {number} was sent"
                f" ({o.reason}). The request may have reached the provider, so faxgate"
                " will not send it again on a guess: the number could receive it twice."
            )
        case JobState.PRESUMED_SENT:
            text = (
                f"Your fax to {number} was most probably sent: the provider removed it,"
                " which it does once a fax is sent, but no callback confirmed it."
            )
        case JobState.CANCELLED:
            text = f"Your fax to {number} was cancelled before it was sent."
        case _:
            text = f"Your fax to {number} is {o.state.value}."
    return _fill(text, keep=number)


def _next_steps(job: Job, o: Outcome) -> list[str]:
    if o.state is JobState.UNCERTAIN:
        status, retry = f"faxgate status {job.id}", f"faxgate retry {job.id}"
        width = len(status) + 3
        return [
            "What to do:\n"
            + _fill(f"  {status:<{width}}shows all that is known of it.", indent=" " * (width + 2))
            + "\n"
            + _fill(
                f"  {retry:<{width}}sends it again. Do this only when you are sure it did"
                " not arrive: ask the recipient if you can.",
                indent=" " * (width + 2),
            )
        ]
    if o.state is JobState.FAILED:
        return [f"To send it again:  faxgate retry {job.id}"]
    if o.state is JobState.PRESUMED_SENT:
        return [
            _fill(
                "Should a late callback from the provider say otherwise, you will hear"
                f" again. If the recipient did not get it: faxgate retry {job.id}"
            )
        ]
    return []


def _table(rows: Sequence[tuple[str, str | None]]) -> str:
    shown = [(label, value) for label, value in rows if value]
    width = max(len(label) for label, _ in shown) + 3  # the colon and two spaces
    return "\n".join(
        _fill(f"  {label + ':':<{width}}{value}", indent=" " * (width + 2))
        for label, value in shown
    )


def _reason(payload: Mapping[str, Any], job: Job, state: JobState) -> str:
    given = _one_line(_text(payload.get("reason")))
    if given:
        return given
    try:
        status = parse_status_code(str(payload.get("status_code") or ""))
        error = parse_error_code(_text(payload.get("error_code")))
    except ValueError:
        pass
    else:
        return describe_outcome(status, error)
    return _one_line(job.reason) or _FALLBACK_REASONS.get(state, state.value)


def _short(reason: str) -> str:
    # A subject keeps the reason's head: "...unknown reason (often a person answered...)".
    head = reason.split(" (", 1)[0].strip()
    return head or reason


def _count(n: int | None, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _opt_time(value: datetime | None) -> str | None:
    return None if value is None else _time(value)


def _state(value: object, fallback: JobState) -> JobState:
    try:
        return JobState(str(value))
    except ValueError:
        return fallback


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _one_line(text: str | None) -> str:
    # Provider text goes into headers too: no line breaks.
    return " ".join(text.split()) if text else ""


def _message_id(value: object) -> str | None:
    text = _one_line(_text(value))
    if not text:
        return None
    return text if text.startswith("<") else f"<{text.strip('<>')}>"
