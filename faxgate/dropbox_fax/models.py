"""The Dropbox Fax API v3's JSON as pydantic models: a tolerant reader.

Our own models rather than the official SDK's, which reject status codes and event types
outside their lists. The description (hellosign/hellosign-openapi, openapi.yaml) is
followed where real answers agree with it; where its own examples drift, every form seen
is read here and nowhere else:

- `metadata` as `[]` (an empty PHP array) instead of an object (`_metadata`);
- `warnings` as one object instead of a list, as the fax line answers declare it
  (`_warnings`); an unreadable warning is dropped, never a reason to refuse an answer;
- keys the description does not list (`transmission_id`, `from`, `test_mode`, a
  transmission's `sender`) ignored;
- `sent_at` absent while a transmission is under way;
- times as Unix seconds, numbers or numeric strings (`provider_time`);
- status codes beyond the enum (`faxgate.dropbox_fax.codes`).

Not tolerated: JSON that is not JSON. Some of the description's hand-written examples end
an object with a trailing comma; a body like that raises ValueError, so the client will
treat it as unreadable (a fault on a read, an ambiguous answer to a send) rather than guess
at what a broken body meant.

Every `from_api` accepts the decoded JSON or its text, and raises ValueError (a pydantic
ValidationError is one) when the data cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from faxgate.clock import provider_time
from faxgate.domain.codes import StatusCode
from faxgate.domain.provider import FaxReport
from faxgate.dropbox_fax.codes import FaxStatus, Outcome, outcome_of, parse_fax_status

__all__ = [
    "REFERENCE_PREFIX",
    "Account",
    "ApiError",
    "ApiWarning",
    "Fax",
    "FaxAnswer",
    "FaxBody",
    "FaxLine",
    "FaxLineAccount",
    "FaxLineAnswer",
    "FaxLinePage",
    "FaxPage",
    "ListInfo",
    "Metadata",
    "OptionalText",
    "Report",
    "Transmission",
    "Transmissions",
    "UtcDatetime",
    "area_codes_from_api",
    "fax_report",
    "load_json",
]


def load_json(data: Any) -> Any:
    """The decoded value: JSON text (str or bytes, strictly parsed) is decoded, anything
    else is taken as already decoded."""
    if isinstance(data, bytes | bytearray | str):
        return json.loads(data)
    return data


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _metadata(value: Any) -> Any:
    """An object as it is; `[]`, null or "" as no metadata; a list by position; a JSON
    object in a string decoded."""
    value = _blank_to_none(value)
    if value is None:
        return {}
    if isinstance(value, list):
        return {str(index): item for index, item in enumerate(value)}
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    return value  # an object passes; anything else fails validation as not a dict


def _list_or_none(value: Any) -> Any:
    return [] if value is None else value


def _warnings(value: Any) -> list[ApiWarning]:
    """A list of warnings, one warning object, or nothing; unreadable items are dropped."""
    items: list[Any]
    if value is None:
        items = []
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    warnings: list[ApiWarning] = []
    for item in items:
        if isinstance(item, ApiWarning):
            warnings.append(item)
        elif isinstance(item, Mapping):
            warnings.append(
                ApiWarning(
                    warning_msg=_text(item.get("warning_msg")),
                    warning_name=_text(item.get("warning_name")),
                )
            )
        elif isinstance(item, str) and item.strip():
            warnings.append(ApiWarning(warning_msg=item.strip(), warning_name=""))
    return warnings


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


UtcDatetime = Annotated[datetime | None, BeforeValidator(provider_time)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalInt = Annotated[int | None, BeforeValidator(_blank_to_none)]
OptionalBool = Annotated[bool | None, BeforeValidator(_blank_to_none)]
Metadata = Annotated[dict[str, Any], BeforeValidator(_metadata)]


class _ApiModel(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        coerce_numbers_to_str=True,  # numbers and ids may come as JSON numbers
        frozen=True,
    )


class ApiWarning(_ApiModel):
    """A warning the provider gives beside a success: `{"warning_msg", "warning_name"}`."""

    warning_msg: str = ""
    warning_name: str = ""


Warnings = Annotated[list[ApiWarning], BeforeValidator(_warnings)]


def _unwrap(data: Any, key: str) -> Any:
    """`{"fax": {...}}` -> `{...}`; anything else unchanged."""
    if isinstance(data, Mapping):
        inner = data.get(key)
        if isinstance(inner, Mapping):
            return inner
    return data


class _Coded:
    """A call's status code, as sent (`status_code`), read in faxgate's terms."""

    status_code: str

    @property
    def status(self) -> FaxStatus:
        return parse_fax_status(self.status_code)

    @property
    def outcome(self) -> Outcome | None:
        """The outcome in faxgate's terms; None for a code nobody published (moves nothing)."""
        return outcome_of(self.status)


class Transmission(_ApiModel, _Coded):
    """One recipient's call: the provider dials each recipient of a fax separately."""

    recipient: str = Field(min_length=1)
    # Kept as sent, for logs; `status` is what it means.
    status_code: Annotated[str, BeforeValidator(_text)] = ""
    sent_at: UtcDatetime = None  # absent while transmitting


Transmissions = Annotated[list[Transmission], BeforeValidator(_list_or_none)]


class FaxBody(_ApiModel):
    """What a fax says of itself, every field optional: a callback's fax-like object may
    lack even its id."""

    title: OptionalText = None
    original_title: OptionalText = None
    subject: OptionalText = None
    message: OptionalText = None
    metadata: Metadata = Field(default_factory=dict)
    created_at: UtcDatetime = None
    sender: OptionalText = None
    files_url: OptionalText = None
    final_copy_uri: OptionalText = None
    transmissions: Transmissions = Field(default_factory=list)


class Fax(FaxBody):
    """A v3 fax: one document sent to one or more recipients."""

    fax_id: str = Field(min_length=1)

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read a fax, bare or under a `fax` key."""
        return cls.model_validate(_unwrap(load_json(data), "fax"))

    def report(self) -> FaxReport:
        """The fax as the provider seam's value."""
        return fax_report(self.fax_id, self, self.transmissions[0] if self.transmissions else None)


class _Envelope(_ApiModel):
    """An answer: what it is about (the subclass's field), and the warnings beside it."""

    warnings: Warnings = Field(default_factory=list)

    @classmethod
    def from_api(cls, data: Any) -> Self:
        return cls.model_validate(load_json(data))


class FaxAnswer(_Envelope):
    """The answer to a send or a get: `{"fax": {...}, "warnings": [...]}`."""

    fax: Fax


class ListInfo(_ApiModel):
    """Where a page of a list stands: pages count from 1; `num_results` may be null."""

    num_pages: OptionalInt = None
    num_results: OptionalInt = None
    page: OptionalInt = None
    page_size: OptionalInt = None

    @property
    def is_last(self) -> bool:
        """Whether no page follows this one (unknown numbers never claim more pages)."""
        if self.page is None or self.num_pages is None:
            return True
        return self.page >= self.num_pages


def _list_info(value: Any) -> Any:
    return ListInfo() if value is None else value


ListInfoField = Annotated[ListInfo, BeforeValidator(_list_info)]


class _Listed(_Envelope):
    """A page of a list: its items (the subclass's field), and where it stands."""

    list_info: ListInfoField = Field(default_factory=ListInfo)


class FaxPage(_Listed):
    """One page of the account's faxes: `{"faxes": [...], "list_info": {...}}`."""

    faxes: Annotated[list[Fax], BeforeValidator(_list_or_none)]


class Account(_ApiModel):
    """The account (`AccountResponse`), as far as faxgate reads it: who it is, and the URL
    its events are posted to."""

    account_id: OptionalText = None
    email_address: OptionalText = None
    callback_url: OptionalText = None

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read the account, bare or under an `account` key."""
        return cls.model_validate(_unwrap(load_json(data), "account"))


class FaxLineAccount(_ApiModel):
    """An account that may use a fax line."""

    account_id: OptionalText = None
    email_address: OptionalText = None
    is_locked: OptionalBool = None
    is_paid_hs: OptionalBool = None
    is_paid_hf: OptionalBool = None


class FaxLine(_ApiModel):
    """A fax number the account owns; `number` is what a send's `sender` expects."""

    number: str = Field(min_length=1)
    created_at: UtcDatetime = None
    updated_at: UtcDatetime = None
    accounts: Annotated[list[FaxLineAccount], BeforeValidator(_list_or_none)] = Field(
        default_factory=list
    )

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read a line, bare or under a `fax_line` key."""
        return cls.model_validate(_unwrap(load_json(data), "fax_line"))


class FaxLineAnswer(_Envelope):
    """The answer about one line: `{"fax_line": {...}, "warnings": ...}`."""

    fax_line: FaxLine


class FaxLinePage(_Listed):
    """One page of the account's lines: `{"fax_lines": [...], "list_info": {...}}`."""

    fax_lines: Annotated[list[FaxLine], BeforeValidator(_list_or_none)]


def area_codes_from_api(data: Any) -> list[str]:
    """`{"area_codes": [415, 510]}` as strings (the description says integers; digits in
    strings are read too)."""
    data = load_json(data)
    items = data.get("area_codes") if isinstance(data, Mapping) else None
    if items is None:
        raise ValueError("expected a list under area_codes")
    if not isinstance(items, list):
        raise ValueError("area_codes is not a list")
    codes: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"an area code must be a number, not {type(item).__name__}")
        code = str(item).strip()
        if not code.isdigit():
            raise ValueError(f"an area code must be digits, not {code!r}")
        codes.append(code)
    return codes


class ApiError(_ApiModel):
    """The body of a failed request: `{"error": {"error_msg", "error_name", "error_path"}}`."""

    error_msg: Annotated[str, BeforeValidator(_text)] = ""
    error_name: Annotated[str, BeforeValidator(_text)] = ""
    error_path: OptionalText = None

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read the envelope; a body without an `error` object is not an error answer."""
        data = load_json(data)
        inner = data.get("error") if isinstance(data, Mapping) else None
        if not isinstance(inner, Mapping):
            raise ValueError("expected an object under error")
        return cls.model_validate(inner)


# A fax's title carries faxgate's job id, the evidence reconciling reads on v3.
REFERENCE_PREFIX: Final = "faxgate "


@dataclass(frozen=True, slots=True)
class Report(_Coded):
    """What an event says about one recipient's call."""

    recipient: str | None
    status_code: str  # as sent, for logs
    sent_at: datetime | None = None


def fax_report(fax_id: str, fax: FaxBody, call: Transmission | Report | None) -> FaxReport:
    """A v3 fax as the seam's report. One recipient per send, so `call` is its one
    transmission: none yet is pending; a status nobody published is unknown (None)."""
    status: StatusCode | None = StatusCode.PENDING
    error = None
    if call is not None:
        outcome = call.outcome
        status, error = (outcome.status, outcome.error) if outcome else (None, None)
    reference = None
    if fax.title and fax.title.startswith(REFERENCE_PREFIX):
        reference = fax.title.removeprefix(REFERENCE_PREFIX).strip() or None
    return FaxReport(
        guid=fax_id,
        to=(call.recipient or "") if call is not None else "",
        status_code=status,
        error_code=error,
        from_=fax.sender,
        created_at=fax.created_at,
        updated_at=call.sent_at if call is not None else None,
        reference=reference,
        raw=fax.model_dump(mode="json"),
    )
