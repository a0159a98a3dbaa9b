"""The seam between faxgate and a fax provider: what sending and the CLI ask of one, in
terms of no provider in particular.

Pure: a Protocol, the values that cross it and the errors it raises. HelloFax v1
(`faxgate.hellofax.provider.HelloFaxProvider`) and the Dropbox Fax API v3
(`faxgate.dropbox_fax.client.DropboxFaxClient`) each implement it; the dispatcher, the
tracker, the poller, the reconciler and the CLI read only this.

Errors are sorted by what the caller may safely do next:

- `NotSent`: the request surely never reached the provider; sending again is safe.
- `Ambiguous`: a request that changes something (a send, a purchase) may or may not have
  taken effect; reconcile against the provider before doing it again.
- `RateLimited`: the provider asks us to slow down (429); nothing was done.
- `Refused`: the provider said no (4xx); the same request will fail the same way.
- `ProviderFault`: the provider failed (5xx) or answered in a way we cannot read;
  `Unavailable` is its transient form for reads that timed out or dropped.

Messages are meant for a person and carry the provider's own words, trimmed. They never
carry credentials: each client scrubs every message before it is raised.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

from faxgate.domain.codes import ErrorCode, StatusCode

__all__ = [
    "Ambiguous",
    "BadResponse",
    "Closing",
    "FaxLineInfo",
    "FaxPage",
    "FaxProvider",
    "FaxReport",
    "NotSent",
    "OutgoingFax",
    "ProviderError",
    "ProviderFault",
    "RateLimited",
    "Refused",
    "Unavailable",
    "Upload",
    "error_for_server_status",
    "is_gone",
    "report_from_body",
    "report_to_body",
]

# A refusal that says the thing asked for is not there (any more).
GONE_STATUSES: Final = frozenset({404, 410})


# --- errors ---------------------------------------------------------------------------------


class ProviderError(Exception):
    """Base of every error a provider's client raises."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.endpoint = endpoint

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class NotSent(ProviderError):
    """The request never left (connection refused, DNS, pool exhausted): safe to retry."""


class Ambiguous(ProviderError):
    """The provider may or may not have acted on a request that changes something."""


class RateLimited(ProviderError):
    """429: too many requests or faxes pending; try again later."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        endpoint: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status=status, endpoint=endpoint)
        self.retry_after = retry_after


class Refused(ProviderError):
    """A 4xx other than 429: the request itself is wrong (credentials, account, input)."""


class ProviderFault(ProviderError):
    """The provider failed (5xx) or gave an answer we cannot use."""


class Unavailable(ProviderFault):
    """A read-only request timed out or dropped; harmless to try again later."""


class BadResponse(ProviderFault):
    """A success status with a body that is not the JSON we expect."""


def error_for_server_status(
    status: int, said: Callable[[str], str], *, endpoint: str, idempotent: bool
) -> ProviderError:
    """The error for a 5xx (or an answer neither success nor 4xx); `said` puts the plain
    words beside the status and the provider's own."""
    # A gateway that timed out or lost the upstream cannot say whether the provider acted.
    if status in (502, 504) and not idempotent:
        return Ambiguous(
            said("a gateway in front of the provider failed; the request may have been acted on"),
            status=status,
            endpoint=endpoint,
        )
    if status == 503:
        return ProviderFault(said("the provider is unavailable"), status=status, endpoint=endpoint)
    if status >= 500:
        return ProviderFault(said("the provider failed"), status=status, endpoint=endpoint)
    return BadResponse(said("the provider answered unexpectedly"), status=status, endpoint=endpoint)


def is_gone(error: ProviderError) -> bool:
    """Whether the provider refused because what was asked for is not there (any more)."""
    return isinstance(error, Refused) and error.status in GONE_STATUSES


# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Upload:
    """A document to fax. A Path is opened at send time and streamed, never read whole."""

    name: str
    content: bytes | Path
    content_type: str = "application/octet-stream"

    @classmethod
    def from_path(cls, path: Path, content_type: str | None = None) -> Upload:
        """An upload named after the file, its type guessed from the suffix if not given."""
        guessed, _ = mimetypes.guess_type(path.name)
        return cls(path.name, path, content_type or guessed or "application/octet-stream")


@dataclass(frozen=True, slots=True)
class FaxReport:
    """What the provider says of one fax to one number: a send's answer, a read, an item of
    its list, a callback. `guid` is the provider's id for it (v1's GUID, v3's fax_id).

    `status_code` is None when the provider gave a status nobody has published: such a
    report moves no job (it is never read as a failure). `raw` is the provider's own JSON
    of it, for `--json` output; it takes no part in comparing reports."""

    guid: str
    to: str
    status_code: StatusCode | None
    error_code: ErrorCode | None = None
    from_: str | None = None
    is_inbound: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    num_pages_billed: int | None = None
    reference: str | None = None  # faxgate's job id, where the provider carried it
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class FaxPage:
    """One page of the account's faxes, newest first. `next_page` is what the provider's
    `next_page()` follows (a link, a page number): None on the last page."""

    faxes: Sequence[FaxReport]
    page: int | None = None
    next_page: str | None = None


@dataclass(frozen=True, slots=True)
class FaxLineInfo:
    """A fax number the account owns; `raw` is the provider's own JSON of it."""

    number: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingFax:
    """A fax to send: files (or a cover page alone) to one number, as E.164 digits.
    `reference` is faxgate's job id, for a provider that can carry it."""

    to: str
    files: Sequence[Upload]
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reference: str | None = None

    def cover_page(self) -> dict[str, str | None]:
        """The cover page's words, by the names v1's client takes them."""
        return {
            "cover_to": self.cover_to,
            "cover_from": self.cover_from,
            "cover_message": self.cover_message,
        }


class Closing(Protocol):
    """`async with` closes it: subclass it for the two methods that say so."""

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class FaxProvider(Closing, Protocol):
    """One provider account, as sending and the CLI use it. Every call raises only
    ProviderError (sorted as above) for what the provider did or did not do."""

    name: str  # for people: "HelloFax v1", "Dropbox Fax API v3"
    removes_sent: bool  # the provider removes a fax once it is sent (a later get: 404)

    async def send(self, fax: OutgoingFax) -> FaxReport: ...

    async def get_fax(self, guid: str) -> FaxReport: ...

    async def list_faxes(self, page: int | None = None, page_size: int | None = None) -> FaxPage:
        """A page of the account's faxes, newest first (the first page by default)."""
        ...

    async def next_page(self, page: FaxPage) -> FaxPage | None: ...

    async def list_fax_lines(self) -> list[FaxLineInfo]: ...

    async def buy_fax_line(self, area_code: str) -> FaxLineInfo: ...

    async def delete_fax_line(self, number: str) -> None: ...

    async def area_codes(self, state: str) -> list[str]: ...


# --- a report kept in the store --------------------------------------------------------------

# Kept reports use v1's key names, so rows kept by earlier versions read alike.
_KEYS: Final = {
    "guid": "Guid",
    "to": "To",
    "from_": "From",
    "is_inbound": "IsInbound",
    "status_code": "StatusCode",
    "error_code": "ErrorCode",
    "created_at": "CreatedAt",
    "updated_at": "UpdatedAt",
    "num_pages_billed": "NumPagesBilled",
    "reference": "Reference",
}


def report_to_body(report: FaxReport) -> dict[str, Any]:
    """A report as JSON to keep (times as Unix seconds), read again by report_from_body."""
    body: dict[str, Any] = {}
    for name, key in _KEYS.items():
        value = getattr(report, name)
        if isinstance(value, datetime):
            value = str(int(value.timestamp()))
        elif isinstance(value, StatusCode | ErrorCode):
            value = value.value
        if value is not None:
            body[key] = value
    return body


def report_from_body(body: Mapping[str, Any]) -> FaxReport:
    """A kept report; ValueError when it cannot be read."""
    guid, to = body.get("Guid"), body.get("To")
    if not isinstance(guid, str) or not guid or not isinstance(to, str | int):
        raise ValueError("a kept report needs its Guid and To")
    status = body.get("StatusCode")
    error = body.get("ErrorCode")
    pages = body.get("NumPagesBilled")
    return FaxReport(
        guid=guid,
        to=str(to),
        status_code=StatusCode(status) if status is not None else None,
        error_code=_error_code(error),
        from_=str(body["From"]) if body.get("From") not in (None, "") else None,
        is_inbound=body.get("IsInbound") is True,
        created_at=_moment(body.get("CreatedAt")),
        updated_at=_moment(body.get("UpdatedAt")),
        num_pages_billed=int(pages) if pages not in (None, "") else None,
        reference=str(body["Reference"]) if body.get("Reference") else None,
    )


def _error_code(value: Any) -> ErrorCode | None:
    if value in (None, ""):
        return None
    try:
        return ErrorCode(value)
    except ValueError:
        return ErrorCode.UNKNOWN  # an undocumented letter still means the fax failed


def _moment(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        return datetime.fromisoformat(value).astimezone(UTC)
    return datetime.fromtimestamp(int(value), UTC)
