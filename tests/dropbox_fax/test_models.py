"""The v3 tolerant reader against the description's own examples and their drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.dropbox_fax.codes import FaxStatus, Outcome
from faxgate.dropbox_fax.models import (
    ApiError,
    Fax,
    FaxAnswer,
    FaxLine,
    FaxLineAnswer,
    FaxLinePage,
    FaxPage,
    ListInfo,
    area_codes_from_api,
)
from tests.dropbox_fax.sources import example_text, fixture_case, without_trailing_commas

FAX_ID = "c2e9691c85d9d6fa6ae773842e3680b2b8650f1d"


def _fax(**changes: Any) -> dict[str, Any]:
    fax: dict[str, Any] = dict(fixture_case("FaxResponse.json")["fax"])
    fax.update(changes)
    return fax


# --- the trailing commas ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["FaxGetResponse.json", "FaxListResponse.json"])
def test_an_example_with_a_trailing_comma_is_refused_as_not_json(name: str) -> None:
    # A real answer like this is not JSON; the client turns the ValueError into "unreadable"
    # (a fault on a read, an ambiguous answer to a send) instead of guessing what it meant.
    text = example_text(name)
    with pytest.raises(ValueError, match="Expecting property name"):
        (FaxAnswer if name == "FaxGetResponse.json" else FaxPage).from_api(text)


def test_the_same_example_without_its_trailing_comma_reads_with_all_its_drift() -> None:
    answer = FaxAnswer.from_api(without_trailing_commas(example_text("FaxGetResponse.json")))

    fax = answer.fax
    assert fax.fax_id == FAX_ID
    assert fax.title == "example title"
    assert fax.original_title == "example original title"
    assert fax.subject == "example subject"
    assert fax.message == "example message"
    assert fax.metadata == {}  # sent as [], an empty PHP array
    assert fax.created_at == datetime.fromtimestamp(1726774555, tz=UTC)
    assert fax.sender == "me@dropboxsign.com"
    assert fax.files_url == (
        "https://api.hellosign.com/v3/fax/files/2b388914e3ae3b738bd4e2ee2850c677e6dc53d2"
    )
    assert fax.final_copy_uri is None
    [transmission] = fax.transmissions  # its extra "sender" key is ignored
    assert transmission.recipient == "recipient@dropboxsign.com"
    assert transmission.status is FaxStatus.SUCCESS
    assert transmission.sent_at == datetime.fromtimestamp(1723231831, tz=UTC)
    assert transmission.outcome == Outcome(StatusCode.SENT)
    assert answer.warnings == []


def test_the_example_list_without_its_trailing_comma_reads() -> None:
    page = FaxPage.from_api(without_trailing_commas(example_text("FaxListResponse.json")))

    assert [fax.fax_id for fax in page.faxes] == [FAX_ID]
    assert page.faxes[0].metadata == {}
    assert page.list_info == ListInfo(num_pages=1, num_results=1, page=1, page_size=1)


# --- the test fixtures (clean JSON) -------------------------------------------------------


def test_a_fax_with_nested_metadata_keeps_it_as_sent() -> None:
    answer = FaxAnswer.from_api(json.dumps(fixture_case("FaxGetResponse.json")))

    assert answer.fax.metadata == {
        "metadata_name_1": "metadata_value_1",
        "metadata_name_2": {"metadata_name_2_a": "metadata_value_2_a"},
        "metadata_name_3": "metadata_value_3",
        "custom_id": 1234,
        "custom_text": "NDA #9",
    }


def test_a_fax_still_transmitting_has_no_sent_at_and_its_extra_keys_are_ignored() -> None:
    answer = FaxAnswer.from_api(fixture_case("FaxResponse.json"))

    fax = answer.fax
    assert fax.sender == "14155557068"
    assert fax.final_copy_uri == "/v3/transmission/final_copy/" + FAX_ID
    assert (fax.subject, fax.message) == (None, None)  # absent, nullable
    [transmission] = fax.transmissions
    assert transmission.recipient == "18005550199"
    assert transmission.status is FaxStatus.TRANSMITTING
    assert transmission.sent_at is None
    assert transmission.outcome == Outcome(StatusCode.TRANSMITTING)
    assert not hasattr(fax, "transmission_id")
    assert not hasattr(fax, "test_mode")


def test_a_list_of_faxes_reads_from_the_fixture() -> None:
    page = FaxPage.from_api(fixture_case("FaxListResponse.json"))

    assert len(page.faxes) == 1
    assert page.faxes[0].metadata["custom_id"] == 1234
    assert page.list_info.is_last


# --- drift and tolerance ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "read"),
    [
        ([], {}),
        (None, {}),
        ("", {}),
        ({"job": "J1"}, {"job": "J1"}),
        (["a", "b"], {"0": "a", "1": "b"}),
        ('{"job": "J1"}', {"job": "J1"}),
    ],
)
def test_metadata_in_every_form_seen_or_likely(raw: object, read: dict[str, object]) -> None:
    assert Fax.from_api({"fax": _fax(metadata=raw)}).metadata == read


@pytest.mark.parametrize("raw", [7, "not an object", True])
def test_metadata_that_is_no_object_at_all_is_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="metadata"):
        Fax.from_api(_fax(metadata=raw))


def test_a_fax_reads_bare_or_wrapped() -> None:
    assert Fax.from_api(_fax()).fax_id == Fax.from_api({"fax": _fax()}).fax_id == FAX_ID


def test_a_fax_without_its_id_is_refused() -> None:
    fax = _fax()
    del fax["fax_id"]
    with pytest.raises(ValueError, match="fax_id"):
        Fax.from_api(fax)


@pytest.mark.parametrize("code", ["on_hold", "error_file", "Error_Busy ", "fax_eaten_by_dog", ""])
def test_every_status_code_parses_and_an_unknown_one_is_kept_as_unknown(code: str) -> None:
    fax = Fax.from_api(_fax(transmissions=[{"recipient": "18005550199", "status_code": code}]))

    [transmission] = fax.transmissions
    assert transmission.status_code == code.strip()
    if code in ("fax_eaten_by_dog", ""):
        assert transmission.status is FaxStatus.UNKNOWN
        assert transmission.outcome is None  # moves no job: never read as a failure
    else:
        assert transmission.status is not FaxStatus.UNKNOWN


def test_a_fax_to_several_recipients_has_one_transmission_each() -> None:
    fax = Fax.from_api(
        _fax(
            transmissions=[
                {"recipient": "18005550199", "status_code": "error_busy", "sent_at": "1750105199"},
                {"recipient": 18005550100, "status_code": "success", "sent_at": 1750105200},
            ]
        )
    )

    busy, sent = fax.transmissions
    assert busy.outcome == Outcome(StatusCode.ERROR, ErrorCode.BUSY)
    assert busy.sent_at == datetime.fromtimestamp(1750105199, tz=UTC)
    assert sent.recipient == "18005550100"  # a number where a string belongs
    assert sent.outcome == Outcome(StatusCode.SENT)


def test_null_transmissions_mean_none_yet() -> None:
    assert Fax.from_api(_fax(transmissions=None)).transmissions == []


def test_a_transmission_without_a_recipient_is_refused() -> None:
    with pytest.raises(ValueError, match="recipient"):
        Fax.from_api(_fax(transmissions=[{"status_code": "success"}]))


def test_created_at_as_a_numeric_string_or_milliseconds() -> None:
    expected = datetime.fromtimestamp(1750105080, tz=UTC)
    assert Fax.from_api(_fax(created_at="1750105080")).created_at == expected
    assert Fax.from_api(_fax(created_at=1750105080000)).created_at == expected


def test_a_time_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="timestamp out of range"):
        Fax.from_api(_fax(created_at=10**30))


def test_warnings_as_a_list_as_one_object_or_garbage() -> None:
    warning = {"warning_msg": "Fax title truncated", "warning_name": "title_truncated"}

    listed = FaxAnswer.from_api({"fax": _fax(), "warnings": [warning, 7, "plain words"]})
    single = FaxLineAnswer.from_api(
        {"fax_line": fixture_case("FaxLineResponse.json")["fax_line"], "warnings": warning}
    )

    assert [(w.warning_name, w.warning_msg) for w in listed.warnings] == [
        ("title_truncated", "Fax title truncated"),
        ("", "plain words"),
    ]
    assert [w.warning_name for w in single.warnings] == ["title_truncated"]
    assert FaxAnswer.from_api({"fax": _fax(), "warnings": None}).warnings == []


def test_list_info_with_a_null_count_and_the_last_page() -> None:
    page = FaxPage.from_api(
        {"faxes": [], "list_info": {"num_pages": 3, "num_results": None, "page": 2}}
    )

    assert page.list_info.num_results is None
    assert not page.list_info.is_last
    assert ListInfo(num_pages=3, page=3).is_last
    assert ListInfo().is_last  # unknown numbers never promise more pages
    assert FaxPage.from_api({"faxes": None}).faxes == []


def test_a_list_without_faxes_is_refused() -> None:
    with pytest.raises(ValueError, match="faxes"):
        FaxPage.from_api({"list_info": {"page": 1}})


# --- fax lines and area codes -------------------------------------------------------------


def test_a_fax_line_from_the_fixture_and_the_example() -> None:
    line = FaxLineAnswer.from_api(fixture_case("FaxLineResponse.json")).fax_line
    example = FaxLine.from_api(example_text("FaxLineResponse.json"))

    assert line.number == "14155557897"
    assert line.created_at == line.updated_at == datetime.fromtimestamp(1750196223, tz=UTC)
    [account] = line.accounts
    assert account.account_id == "a3367a4130f3624687ea7de6f09df951a44923dd"
    assert account.email_address == "me@dropboxsign.com"
    assert (account.is_locked, account.is_paid_hs, account.is_paid_hf) == (False, False, True)
    assert example.number == "[FAX_NUMBER]"


def test_a_list_of_fax_lines() -> None:
    page = FaxLinePage.from_api(example_text("FaxLineListResponse.json"))
    fixture = FaxLinePage.from_api(fixture_case("FaxLineListResponse.json"))

    assert [line.number for line in fixture.fax_lines] == ["14155557897"]
    assert len(page.fax_lines) == 1
    assert page.list_info.page_size == 1


def test_a_fax_line_with_a_number_as_an_integer() -> None:
    assert FaxLine.from_api({"fax_line": {"number": 14155557897}}).number == "14155557897"


def test_area_codes_from_the_example() -> None:
    codes = area_codes_from_api(example_text("FaxLineAreaCodeGetResponse.json"))

    assert codes[:3] == ["209", "213", "310"]
    assert len(codes) == 30


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({}, "expected a list under area_codes"),
        ({"area_codes": 415}, "not a list"),
        ({"area_codes": [True]}, "must be a number"),
        ({"area_codes": ["4l5"]}, "must be digits"),
    ],
)
def test_area_codes_that_cannot_be_read(body: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        area_codes_from_api(body)


# --- the error envelope -------------------------------------------------------------------


def test_the_error_envelope_from_the_fixture() -> None:
    error = ApiError.from_api(fixture_case("ErrorResponse.json"))

    assert error == ApiError(
        error_msg="Generic error message", error_name="bad_request", error_path="path_to_error[0]"
    )


def test_a_body_without_an_error_object_is_no_error_answer() -> None:
    with pytest.raises(ValueError, match="under error"):
        ApiError.from_api({"error": "just words"})
