"""The Dropbox Fax API v3's transmission status codes, and what each means for faxgate.

Pure rules, no IO. The description's enum lists eight codes; the reference page adds
`on_hold` and `error_file`; more may come. Every code is read here and nowhere else, and a
code nobody has published reads as `UNKNOWN`: a status we cannot interpret, never a
failure (a fax reported as failed may be sent again, so guessing "failed" could send it
twice).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from faxgate.domain.codes import ErrorCode, ProviderCode, StatusCode

__all__ = ["FaxStatus", "Outcome", "outcome_of", "parse_fax_status"]


class FaxStatus(ProviderCode):
    """Where one transmission of a v3 fax stands."""

    SUCCESS = "success"
    TRANSMITTING = "transmitting"
    ERROR_COULD_NOT_FAX = "error_could_not_fax"
    ERROR_UNKNOWN = "error_unknown"  # a published failure whose cause the provider does not say
    ERROR_BUSY = "error_busy"
    ERROR_NO_ANSWER = "error_no_answer"
    ERROR_DISCONNECTED = "error_disconnected"
    ERROR_BAD_DESTINATION = "error_bad_destination"
    # Only on the reference page, not in the description's enum.
    ON_HOLD = "on_hold"
    ERROR_FILE = "error_file"
    # Ours: a code the provider has not published. Not a failure.
    UNKNOWN = "unknown"


def parse_fax_status(raw: object) -> FaxStatus:
    """Read a status code; anything unpublished (or not text at all) is UNKNOWN."""
    if not isinstance(raw, str):
        return FaxStatus.UNKNOWN
    try:
        return FaxStatus(raw)
    except ValueError:
        return FaxStatus.UNKNOWN


class Outcome(NamedTuple):
    """A v3 status in the v1 terms the rest of faxgate decides with."""

    status: StatusCode
    error: ErrorCode | None = None


_OUTCOMES: Final[dict[FaxStatus, Outcome]] = {
    FaxStatus.SUCCESS: Outcome(StatusCode.SENT),
    FaxStatus.TRANSMITTING: Outcome(StatusCode.TRANSMITTING),
    # Busy and no answer keep their own retry classes (dialled again per [retry]).
    FaxStatus.ERROR_BUSY: Outcome(StatusCode.ERROR, ErrorCode.BUSY),
    FaxStatus.ERROR_NO_ANSWER: Outcome(StatusCode.ERROR, ErrorCode.NO_ANSWER),
    FaxStatus.ERROR_DISCONNECTED: Outcome(StatusCode.ERROR, ErrorCode.DISCONNECTED),
    # v1's "not allocated" is the nearest meaning: the number itself cannot take a fax.
    FaxStatus.ERROR_BAD_DESTINATION: Outcome(StatusCode.ERROR, ErrorCode.UNALLOCATED),
    FaxStatus.ERROR_COULD_NOT_FAX: Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN),
    FaxStatus.ERROR_UNKNOWN: Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN),
    # v1's unknown error already covers "a document could not be converted".
    FaxStatus.ERROR_FILE: Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN),
    FaxStatus.ON_HOLD: Outcome(StatusCode.ON_HOLD),
}


def outcome_of(status: FaxStatus) -> Outcome | None:
    """The outcome a status reports, or None for UNKNOWN: such a report moves no job."""
    return _OUTCOMES.get(status)
