"""The provider's status and error codes: what they mean, and what may follow them.

Pure rules, no IO. The provider has published two spellings over the years (on hold as
`H` or `O`, busy as `B` or `R`); both are read here, in one place, so the rest of the
code only ever sees one enum member for each meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final, Self

__all__ = [
    "ErrorCode",
    "ProviderCode",
    "RetryClass",
    "StatusCode",
    "describe_error",
    "describe_outcome",
    "describe_status",
    "is_final",
    "moves_forward",
    "parse_error_code",
    "parse_status_code",
    "retry_class",
    "status_rank",
]


class ProviderCode(StrEnum):
    """A code as the provider writes it, read whatever its case and the spaces around it,
    and in either spelling where the provider published two (`_ALIASES`)."""

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        if not isinstance(value, str):
            return None
        code = value.strip().casefold()
        code = _ALIASES.get(cls, {}).get(code, code)
        for member in cls:
            if member.value.casefold() == code:
                return member
        return None


class StatusCode(ProviderCode):
    """Where a transmission stands at the provider."""

    PENDING = "P"
    TRANSMITTING = "T"
    SENT = "S"
    ERROR = "E"
    ON_HOLD = "H"


class ErrorCode(ProviderCode):
    """Why a transmission failed; only set when the status is `E`."""

    BUSY = "B"
    NO_ANSWER = "N"
    UNALLOCATED = "A"
    DISCONNECTED = "D"
    BLACKLISTED = "L"
    UNKNOWN = "U"


class RetryClass(StrEnum):
    """The kinds of failure worth dialling again, each with its own retry policy."""

    BUSY = "busy"
    NO_ANSWER = "no_answer"


# The newer help page's letters for the same meanings (case aside, as every code is read).
_ALIASES: Final[Mapping[type[ProviderCode], Mapping[str, str]]] = {
    StatusCode: {"o": "h"},
    ErrorCode: {"r": "b"},
}


def parse_status_code(raw: str) -> StatusCode:
    """Read a status letter in either spelling; raise ValueError for anything else."""
    return StatusCode(raw)


def parse_error_code(raw: str | None) -> ErrorCode | None:
    """Read an error letter in either spelling; None or blank means no error.

    Raises ValueError for a letter the provider never documented.
    """
    if raw is None or not raw.strip():
        return None
    return ErrorCode(raw)


_STATUS_WORDS: dict[StatusCode, str] = {
    StatusCode.PENDING: "the provider is converting the documents",
    StatusCode.TRANSMITTING: "the provider is sending the fax",
    StatusCode.SENT: "the fax was sent",
    StatusCode.ERROR: "the fax failed to convert or to send fully",
    StatusCode.ON_HOLD: (
        "the provider put the fax on hold: the account is unconfirmed or out of pages"
    ),
}

_ERROR_WORDS: dict[ErrorCode, str] = {
    ErrorCode.BUSY: "the line was busy",
    ErrorCode.NO_ANSWER: "no one answered",
    ErrorCode.UNALLOCATED: "the number is not allocated (it may have been disconnected)",
    ErrorCode.DISCONNECTED: "the line is disconnected or unreachable",
    ErrorCode.BLACKLISTED: "the provider has blacklisted the number",
    ErrorCode.UNKNOWN: (
        "the fax failed for an unknown reason (often a person answered instead of a fax "
        "machine, or a document could not be converted)"
    ),
}

_RETRY_CLASSES: dict[ErrorCode, RetryClass] = {
    ErrorCode.BUSY: RetryClass.BUSY,
    ErrorCode.NO_ANSWER: RetryClass.NO_ANSWER,
}

# Forward-only: a late callback saying "transmitting" never undoes "sent". The final
# statuses share one rank, so one final outcome never replaces another.
_RANKS: dict[StatusCode, int] = {
    StatusCode.PENDING: 0,
    StatusCode.TRANSMITTING: 1,
    StatusCode.SENT: 2,
    StatusCode.ERROR: 2,
    StatusCode.ON_HOLD: 2,
}


def describe_status(status: StatusCode) -> str:
    """The status in plain words for a person."""
    return _STATUS_WORDS[status]


def describe_error(error: ErrorCode) -> str:
    """The error in plain words for a person."""
    return _ERROR_WORDS[error]


def describe_outcome(status: StatusCode, error: ErrorCode | None = None) -> str:
    """One sentence for a person: the error's meaning when there is one, else the status's."""
    if status is StatusCode.ERROR and error is not None:
        return describe_error(error)
    return describe_status(status)


def is_final(status: StatusCode) -> bool:
    """Whether the provider will move this transmission no further.

    On hold counts as final: it waits on a person fixing the account, not on the provider.
    """
    return _RANKS[status] == _RANKS[StatusCode.SENT]


def status_rank(status: StatusCode) -> int:
    """Position in the forward-only order P < T < S = E = H."""
    return _RANKS[status]


def moves_forward(current: StatusCode, new: StatusCode) -> bool:
    """Whether `new` may replace `current` (a repeated or late report may not)."""
    return status_rank(new) > status_rank(current)


def retry_class(error: ErrorCode | None) -> RetryClass | None:
    """The retry policy that applies to this failure, or None when dialling again is futile."""
    if error is None:
        return None
    return _RETRY_CLASSES.get(error)
