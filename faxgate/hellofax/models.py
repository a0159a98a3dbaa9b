"""The HelloFax v1 API's JSON as pydantic models: a tolerant reader.

HelloFax never published a full v1 reference, so every shape that is only guessed
(see docs on the API) is read in all its plausible forms here and nowhere else:
`Transmission` or `Transaction` wrappers, bare or wrapped list items, one object or a list
in answer to a send, both code spellings, timestamps as strings or numbers, numbers as
strings or ints, empty strings for absent links.

Every `from_api` accepts the decoded JSON (or its text) and raises ValueError (a pydantic
ValidationError is one) when the data cannot be read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from faxgate.clock import provider_time
from faxgate.domain.codes import ErrorCode, StatusCode, parse_error_code, parse_status_code
from faxgate.domain.provider import FaxLineInfo, FaxPage, FaxReport, Upload

__all__ = [
    "Account",
    "ErrorCode",
    "FaxLine",
    "StatusCode",
    "Transmission",
    "TransmissionPage",
    "Upload",
    "area_codes_from_api",
    "fax_lines_from_api",
    "transmissions_from_api",
]


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _status(value: Any) -> Any:
    return parse_status_code(value) if isinstance(value, str) else value


def _error(value: Any) -> Any:
    if value is None or isinstance(value, ErrorCode):
        return value
    if not isinstance(value, str):  # a number or an object where a letter belongs
        return ErrorCode.UNKNOWN
    try:
        return parse_error_code(value)
    except ValueError:
        # An undocumented letter still means the fax failed; keep that, not the parse error.
        return ErrorCode.UNKNOWN


UtcDatetime = Annotated[datetime | None, BeforeValidator(provider_time)]
OptionalText = Annotated[str | None, BeforeValidator(_blank_to_none)]
OptionalInt = Annotated[int | None, BeforeValidator(_blank_to_none)]
OptionalBool = Annotated[bool | None, BeforeValidator(_blank_to_none)]


class _ApiModel(BaseModel):
    model_config = ConfigDict(
        populate_by_name=True,
        extra="ignore",
        coerce_numbers_to_str=True,  # numbers and GUIDs may come as JSON numbers
        frozen=True,
    )


def _load(data: Any) -> Any:
    """Accept the JSON text as well as the decoded value (a callback's `json` part is text)."""
    if isinstance(data, bytes | bytearray | str):
        return json.loads(data)
    return data


def _unwrap(data: Any, *keys: str) -> Any:
    """`{"Transmission": {...}}` -> `{...}`; anything else unchanged."""
    if isinstance(data, Mapping):
        for key in keys:
            inner = data.get(key)
            if isinstance(inner, Mapping):
                return inner
    return data


def _list_in(data: Any, *keys: str) -> list[Any]:
    """The items of a list envelope (`{"FaxLines": [...]}`), or of a bare list."""
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        for key in keys:
            if key in data:
                items = data[key]
                if items is None:
                    return []
                if isinstance(items, list):
                    return items
                raise ValueError(f"{key} is not a list")
    raise ValueError(f"expected a list under {' or '.join(keys)}")


_TRANSMISSION_WRAPPERS = ("Transmission", "Transaction")
_TRANSMISSION_LISTS = ("Transmissions", "Transactions")


class Transmission(_ApiModel):
    """One fax, outbound or inbound, as the provider sees it."""

    guid: str = Field(alias="Guid")
    to: str = Field(alias="To")
    from_: OptionalText = Field(default=None, alias="From")
    is_inbound: bool = Field(default=False, alias="IsInbound")
    is_draft: bool = Field(default=False, alias="IsDraft")
    type_code: OptionalText = Field(default=None, alias="TypeCode")
    status_code: Annotated[StatusCode, BeforeValidator(_status)] = Field(alias="StatusCode")
    error_code: Annotated[ErrorCode | None, BeforeValidator(_error)] = Field(
        default=None, alias="ErrorCode"
    )
    created_at: UtcDatetime = Field(default=None, alias="CreatedAt")
    updated_at: UtcDatetime = Field(default=None, alias="UpdatedAt")
    uri: OptionalText = Field(default=None, alias="Uri")
    num_pages_billed: OptionalInt = Field(default=None, alias="NumPagesBilled")

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read a transmission, bare or under a `Transmission` or `Transaction` key."""
        return cls.model_validate(_unwrap(_load(data), *_TRANSMISSION_WRAPPERS))

    @property
    def reference(self) -> None:
        """v1 has nowhere to carry faxgate's job id."""
        return None

    def report(self) -> FaxReport:
        """The transmission as the provider seam's value."""
        return FaxReport(
            guid=self.guid,
            to=self.to,
            status_code=self.status_code,
            error_code=self.error_code,
            from_=self.from_,
            is_inbound=self.is_inbound,
            created_at=self.created_at,
            updated_at=self.updated_at,
            num_pages_billed=self.num_pages_billed,
            raw=self.model_dump(mode="json", by_alias=True),
        )


class Account(_ApiModel):
    """The account's settings."""

    guid: str = Field(alias="Guid")
    default_outbound_fax_callback_url: OptionalText = Field(
        default=None, alias="DefaultOutboundFaxCallbackUrl"
    )
    default_inbound_fax_callback_url: OptionalText = Field(
        default=None, alias="DefaultInboundFaxCallbackUrl"
    )
    should_send_outbound_conf_emails: OptionalBool = Field(
        default=None, alias="ShouldSendOutboundConfEmails"
    )
    should_include_pdfs_in_received_fax_emails: OptionalBool = Field(
        default=None, alias="ShouldIncludePdfsInReceivedFaxEmails"
    )

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read the account, bare or under an `Account` key."""
        return cls.model_validate(_unwrap(_load(data), "Account"))


class FaxLine(_ApiModel):
    """A fax number the account owns; `number` is what a send's `From` expects."""

    number: str = Field(alias="Number", min_length=1)
    uri: OptionalText = Field(default=None, alias="Uri")

    def info(self) -> FaxLineInfo:
        return FaxLineInfo(self.number, self.model_dump(mode="json"))

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read a line: an object (bare or under `FaxLine`), a one-item `FaxLines` list,
        or just the number as a string or int."""
        data = _unwrap(_load(data), "FaxLine")
        if isinstance(data, Mapping) and "FaxLines" in data and "Number" not in data:
            items = _list_in(data, "FaxLines")
            if len(items) != 1:
                raise ValueError(f"expected one fax line, got {len(items)}")
            return cls.from_api(items[0])
        if isinstance(data, str | int) and not isinstance(data, bool):
            return cls(number=str(data))
        return cls.model_validate(data)


class TransmissionPage(_ApiModel):
    """One page of the account's transmissions, with the provider's links to the others."""

    transmissions: list[Transmission] = Field(default_factory=list, alias="Transmissions")
    page: OptionalInt = Field(default=None, alias="Page")
    num_pages: OptionalInt = Field(default=None, alias="NumPages")
    page_size: OptionalInt = Field(default=None, alias="PageSize")
    total: OptionalInt = Field(default=None, alias="Total")
    first_page_uri: OptionalText = Field(default=None, alias="FirstPageUri")
    previous_page_uri: OptionalText = Field(default=None, alias="PreviousPageUri")
    next_page_uri: OptionalText = Field(default=None, alias="NextPageUri")
    last_page_uri: OptionalText = Field(default=None, alias="LastPageUri")

    @classmethod
    def from_api(cls, data: Any) -> Self:
        """Read a page envelope; items may be bare or wrapped, a bare list is one page."""
        data = _load(data)
        items = [Transmission.from_api(item) for item in _list_in(data, *_TRANSMISSION_LISTS)]
        envelope = {
            key: value
            for key, value in (data.items() if isinstance(data, Mapping) else ())
            if key not in _TRANSMISSION_LISTS
        }
        return cls.model_validate({**envelope, "Transmissions": items})

    def report(self) -> FaxPage:
        """The page as the provider seam's value: its next link is what next_page follows."""
        return FaxPage(
            tuple(tx.report() for tx in self.transmissions), self.page, self.next_page_uri
        )


def transmissions_from_api(data: Any) -> list[Transmission]:
    """The answer to a send: one transmission (bare or wrapped), or a list of them."""
    data = _load(data)
    if isinstance(data, Mapping) and any(key in data for key in _TRANSMISSION_LISTS):
        return TransmissionPage.from_api(data).transmissions
    if isinstance(data, list):
        return [Transmission.from_api(item) for item in data]
    return [Transmission.from_api(data)]


def fax_lines_from_api(data: Any) -> list[FaxLine]:
    """`{"FaxLines": [...]}` (or a bare list) of objects, wrapped objects or bare numbers."""
    return [FaxLine.from_api(item) for item in _list_in(_load(data), "FaxLines")]


def area_codes_from_api(data: Any) -> list[str]:
    """`{"AreaCodes": [415, "510"]}` (or a bare list) as strings."""
    codes: list[str] = []
    for item in _list_in(_load(data), "AreaCodes"):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ValueError(f"an area code must be a number, not {type(item).__name__}")
        codes.append(str(item).strip())
    return codes
