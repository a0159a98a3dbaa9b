"""v3 status codes in faxgate's terms."""

from __future__ import annotations

import pytest

from faxgate.domain.codes import ErrorCode, RetryClass, StatusCode, is_final, retry_class
from faxgate.dropbox_fax.codes import FaxStatus, Outcome, outcome_of, parse_fax_status

# The description's enum (FaxResponseTransmission.status_code in openapi.yaml).
DESCRIBED = [
    "success",
    "transmitting",
    "error_could_not_fax",
    "error_unknown",
    "error_busy",
    "error_no_answer",
    "error_disconnected",
    "error_bad_destination",
]
# Only on the reference page.
REFERENCE_PAGE = ["on_hold", "error_file"]


@pytest.mark.parametrize("code", DESCRIBED + REFERENCE_PAGE)
def test_every_published_code_has_a_final_or_moving_outcome(code: str) -> None:
    status = parse_fax_status(code)

    assert status.value == code
    assert outcome_of(status) is not None


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("success", Outcome(StatusCode.SENT)),
        ("transmitting", Outcome(StatusCode.TRANSMITTING)),
        ("error_busy", Outcome(StatusCode.ERROR, ErrorCode.BUSY)),
        ("error_no_answer", Outcome(StatusCode.ERROR, ErrorCode.NO_ANSWER)),
        ("error_disconnected", Outcome(StatusCode.ERROR, ErrorCode.DISCONNECTED)),
        ("error_bad_destination", Outcome(StatusCode.ERROR, ErrorCode.UNALLOCATED)),
        ("error_could_not_fax", Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN)),
        ("error_unknown", Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN)),
        ("error_file", Outcome(StatusCode.ERROR, ErrorCode.UNKNOWN)),
        ("on_hold", Outcome(StatusCode.ON_HOLD)),
    ],
)
def test_each_code_maps_to_its_outcome(code: str, outcome: Outcome) -> None:
    assert outcome_of(parse_fax_status(code)) == outcome


def test_only_busy_and_no_answer_are_dialled_again() -> None:
    retried = {
        code
        for code in DESCRIBED + REFERENCE_PAGE
        if (found := outcome_of(parse_fax_status(code))) is not None
        and retry_class(found.error) is not None
    }

    assert retried == {"error_busy", "error_no_answer"}
    assert retry_class(ErrorCode.BUSY) is RetryClass.BUSY


def test_only_transmitting_is_not_final() -> None:
    moving = {
        code
        for code in DESCRIBED + REFERENCE_PAGE
        if (found := outcome_of(parse_fax_status(code))) is not None and not is_final(found.status)
    }

    assert moving == {"transmitting"}


@pytest.mark.parametrize("raw", ["error_gremlins", "queued", "", "S", None, 3, ["success"]])
def test_an_unpublished_code_is_unknown_and_moves_nothing(raw: object) -> None:
    status = parse_fax_status(raw)

    assert status is FaxStatus.UNKNOWN
    assert outcome_of(status) is None


def test_case_and_spaces_do_not_matter() -> None:
    assert parse_fax_status(" SUCCESS\n") is FaxStatus.SUCCESS
    assert parse_fax_status("Error_No_Answer") is FaxStatus.ERROR_NO_ANSWER
