"""The provider seam's values: a report kept in the store reads back alike."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.domain.provider import (
    FaxReport,
    NotSent,
    Refused,
    is_gone,
    report_from_body,
    report_to_body,
)

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_report_kept_reads_back_the_same() -> None:
    report = FaxReport(
        guid="g1",
        to="14155550123",
        status_code=StatusCode.ERROR,
        error_code=ErrorCode.BUSY,
        from_="14155550100",
        created_at=AT,
        updated_at=AT,
        num_pages_billed=2,
    )
    assert report_from_body(report_to_body(report)) == report


def test_a_body_kept_by_an_earlier_version_still_reads() -> None:
    # As the tracker wrote v1 transmissions before the seam: aliases, times as text.
    body = {
        "Guid": "g1",
        "To": "14155550123",
        "IsInbound": False,
        "IsDraft": False,
        "StatusCode": "S",
        "CreatedAt": str(int(AT.timestamp())),
        "NumPagesBilled": 3,
        "Uri": "/v1/Accounts/x/Transmissions/g1",
    }
    report = report_from_body(body)
    assert (report.guid, report.status_code, report.created_at) == ("g1", StatusCode.SENT, AT)
    assert report.num_pages_billed == 3


def test_an_unknown_status_is_kept_as_unknown_and_an_odd_error_as_a_failure() -> None:
    kept = report_to_body(FaxReport(guid="g1", to="1", status_code=None))
    assert "StatusCode" not in kept
    assert report_from_body(kept).status_code is None
    odd = report_from_body({"Guid": "g1", "To": "1", "StatusCode": "E", "ErrorCode": "Z"})
    assert odd.error_code is ErrorCode.UNKNOWN


@pytest.mark.parametrize("body", [{}, {"Guid": "", "To": "1"}, {"Guid": "g1"}])
def test_a_body_without_its_guid_or_number_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Guid and To"):
        report_from_body(body)


def test_only_a_refusal_of_something_not_there_is_gone() -> None:
    assert is_gone(Refused("no such fax", status=404))
    assert is_gone(Refused("deleted", status=410))
    assert not is_gone(Refused("bad key", status=401))
    assert not is_gone(NotSent("refused connection"))
