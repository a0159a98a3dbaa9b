"""The Dropbox Fax API v3's callbacks (events): reading them and checking who sent them.

Pure functions, no IO and no web framework: the HTTP server hands over the text of the
multipart field named `json` (`PAYLOAD_FIELD`) and answers `EVENT_ANSWER` exactly, or the
provider retries for about three days.

The payload: `{"event": {"event_time", "event_type", "event_hash", "event_metadata"},
"account_guid", "client_id", and the fax under "fax" or "transmission"}`. Which event types
fax results use is not settled in public (the provider's help page shows
`transmission_disconnected`; later examples use `fax_sent`, `fax_busy`, …), so every
`fax_*` and `transmission_*` type is taken as a fax event, and the outcome is read from the
status codes the payload carries, never from the type's name.

`event_hash` is the hex HMAC-SHA256 of `event_time + event_type`, keyed with the API key.
It proves who sent the event, not that it is new: the provider repeats an event until it
is answered, with the same hash, so a replay verifies too. Telling a repeat from news is
the tracker's job (a report only ever moves a job forward).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from faxgate.domain.provider import FaxReport
from faxgate.dropbox_fax.models import (
    FaxBody,
    OptionalText,
    Report,
    UtcDatetime,
    fax_report,
    load_json,
)

__all__ = [
    "EVENT_ANSWER",
    "EVENT_ANSWER_CONTENT_TYPE",
    "PAYLOAD_FIELD",
    "Callback",
    "CallbackFax",
    "Event",
    "Report",
    "Verdict",
    "event_hash",
    "verify_event",
]

EVENT_ANSWER: Final = "Hello API Event Received"
EVENT_ANSWER_CONTENT_TYPE: Final = "text/plain"
PAYLOAD_FIELD: Final = "json"

# Event types that concern a fax; any other (account_confirmed, callback_test, the
# signature events of the same API) is answered and otherwise ignored.
_FAX_EVENT_PREFIXES: Final = ("fax_", "transmission_")
# Where the fax may sit in the payload, in order of preference.
_SUBJECT_KEYS: Final = ("fax", "transmission")


def _event_time(value: Any) -> Any:
    """Kept as the text that was signed; a JSON integer is read as its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _any_object(value: Any) -> Any:
    return value if isinstance(value, Mapping) else {}


class _EventModel(BaseModel):
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, frozen=True)


class Event(_EventModel):
    """What happened and when, and the hash that proves the provider said so."""

    event_time: Annotated[str, BeforeValidator(_event_time)] = Field(min_length=1)
    event_type: str = Field(min_length=1)
    event_hash: OptionalText = None
    event_metadata: Annotated[dict[str, Any], BeforeValidator(_any_object)] = Field(
        default_factory=dict
    )

    @property
    def at(self) -> datetime | None:
        """When the provider says the event happened, if `event_time` is a readable time."""
        try:
            return _EventTime.model_validate({"at": self.event_time}).at
        except ValidationError:
            return None

    @property
    def is_fax_event(self) -> bool:
        return self.event_type.strip().lower().startswith(_FAX_EVENT_PREFIXES)


class _EventTime(_EventModel):
    at: UtcDatetime = None


class CallbackFax(FaxBody):
    """The fax an event is about. Every field is optional: the examples show a fax-like
    object without `fax_id`, and a transmission may come as one flat object."""

    fax_id: OptionalText = None
    transmission_id: OptionalText = None
    # A flat transmission's own fields.
    recipient: OptionalText = None
    status_code: OptionalText = None
    sent_at: UtcDatetime = None

    @property
    def id(self) -> str | None:
        """The fax's id: `fax_id`, else `transmission_id` (the same value in the examples)."""
        return self.fax_id or self.transmission_id

    @property
    def reports(self) -> list[Report]:
        """One report per transmission listed; a flat transmission's own status otherwise."""
        if self.transmissions:
            return [
                Report(item.recipient, item.status_code, item.sent_at)
                for item in self.transmissions
            ]
        if self.status_code:
            return [Report(self.recipient, self.status_code, self.sent_at)]
        return []


@dataclass(frozen=True, slots=True)
class Callback:
    """A whole event. `fax` is None when the payload carries none, or one that cannot be
    read (`fax_problem` says why): the event itself is still good, and is still answered."""

    event: Event
    account_guid: str | None = None
    client_id: str | None = None
    fax: CallbackFax | None = None
    fax_problem: str | None = None

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read the `json` field's text (or the decoded value); ValueError when it is not
        JSON or holds no readable `event`."""
        data = load_json(data)
        if not isinstance(data, Mapping):
            raise ValueError("a callback payload must be a JSON object")
        if not isinstance(data.get("event"), Mapping):
            raise ValueError("a callback payload must hold an event object")
        event = Event.model_validate(data["event"])
        fax: CallbackFax | None = None
        problem: str | None = None
        subject = next(
            (data[key] for key in _SUBJECT_KEYS if isinstance(data.get(key), Mapping)), None
        )
        if subject is not None:
            try:
                fax = CallbackFax.model_validate(subject)
            except ValidationError as exc:
                problem = _summary(exc)
        return cls(
            event=event,
            account_guid=_optional_text(data.get("account_guid")),
            client_id=_optional_text(data.get("client_id")),
            fax=fax,
            fax_problem=problem,
        )

    @property
    def reports(self) -> list[Report]:
        return self.fax.reports if self.fax is not None else []

    def fax_reports(self) -> list[FaxReport]:
        """What the event says of its fax as the seam's reports, one per call; none when
        it carries no fax, or one without an id."""
        fax = self.fax
        if fax is None or fax.id is None:
            return []
        return [fax_report(fax.id, fax, call) for call in fax.reports]


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None


def _summary(exc: ValidationError) -> str:
    """Where and what, without the values (they may be a person's fax number)."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'fax'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)[:3]
    )


class Verdict(StrEnum):
    """Whether an event comes from the provider; the values name a metric's label."""

    VERIFIED = "verified"
    MISSING = "missing"  # no hash at all
    MISMATCH = "mismatch"  # a hash, but not the one the API key makes
    NO_KEY = "no_key"  # no API key to check with: anyone could forge the hash


def event_hash(api_key: str, event_time: str, event_type: str) -> str:
    """The hash the provider sends with an event: hex HMAC-SHA256 of time then type."""
    message = f"{event_time}{event_type}".encode()
    return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest()


def verify_event(api_key: str, event: Event) -> Verdict:
    """Check an event's hash against the API key, in constant time."""
    if not api_key:
        return Verdict.NO_KEY
    given = (event.event_hash or "").strip()
    if not given:
        return Verdict.MISSING
    expected = event_hash(api_key, event.event_time, event.event_type)
    # Bytes, so a hash with characters outside ASCII compares (and fails) rather than raises.
    if hmac.compare_digest(expected.encode(), given.lower().encode()):
        return Verdict.VERIFIED
    return Verdict.MISMATCH
