"""v3 callbacks: reading the `json` field, and proving the provider sent it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.dropbox_fax.codes import FaxStatus, Outcome
from faxgate.dropbox_fax.events import (
    EVENT_ANSWER,
    PAYLOAD_FIELD,
    Callback,
    Event,
    Verdict,
    event_hash,
    verify_event,
)
from tests.dropbox_fax.sources import EXAMPLE_API_KEY, fixture_case

ACCOUNT = "63522885f9261e2b04eea043933ee7313eb674fd"
FAX_ID = "c2e9691c85d9d6fa6ae773842e3680b2b8650f1d"
PUBLISHED_CASES = [
    "base",
    "base_no_metadata",
    "account",
    "account_no_metadata",
    "signature_request",
    "signature_request_no_metadata",
    "template",
    "template_no_metadata",
]


def _signed(
    event_type: str, event_time: str = "1750105199", key: str = EXAMPLE_API_KEY
) -> dict[str, Any]:
    return {
        "event_time": event_time,
        "event_type": event_type,
        "event_hash": event_hash(key, event_time, event_type),
        "event_metadata": {
            "related_signature_id": None,
            "reported_for_account_id": ACCOUNT,
            "reported_for_app_id": None,
            "event_message": None,
        },
    }


def _transmission_event(event_type: str, status_code: str, **fax: Any) -> str:
    """A fax event shaped after the provider's help page: a fax-like `transmission`."""
    subject: dict[str, Any] = {
        "test_mode": False,
        "title": "faxgate J-0001",
        "original_title": "invoice.pdf",
        "subject": None,
        "message": None,
        "metadata": [],
        "created_at": 1750105080,
        "sender": "14155557068",
        "transmissions": [{"recipient": "18005550199", "status_code": status_code}],
        "files_url": "https://api.hellosign.com/v3/fax/files/" + FAX_ID,
    }
    subject.update(fax)
    return json.dumps(
        {
            "event": _signed(event_type),
            "account_guid": ACCOUNT,
            "client_id": None,
            "transmission": subject,
        }
    )


def test_the_answer_is_exactly_the_providers_words() -> None:
    assert EVENT_ANSWER == "Hello API Event Received"
    assert PAYLOAD_FIELD == "json"


# --- the hash -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", PUBLISHED_CASES)
def test_the_descriptions_signed_events_verify_with_its_key(case: str) -> None:
    callback = Callback.from_api(
        json.dumps(fixture_case("EventCallbackHelper_AccountCallbacks.json", case))
    )

    assert verify_event(EXAMPLE_API_KEY, callback.event) is Verdict.VERIFIED
    assert verify_event(EXAMPLE_API_KEY[::-1], callback.event) is Verdict.MISMATCH
    assert callback.account_guid == ACCOUNT


def test_the_hash_is_hmac_sha256_of_time_then_type() -> None:
    published = fixture_case("EventCallbackHelper_AccountCallbacks.json", "base")["event"]

    assert event_hash(EXAMPLE_API_KEY, "1348177752", "unknown_error") == published["event_hash"]


def test_a_good_hash_verifies() -> None:
    callback = Callback.from_api(_transmission_event("fax_sent", "success"))

    assert verify_event(EXAMPLE_API_KEY, callback.event) is Verdict.VERIFIED


def test_a_hash_in_capitals_still_verifies() -> None:
    event = Event.model_validate(_signed("fax_sent"))
    shouted = event.model_copy(update={"event_hash": (event.event_hash or "").upper()})

    assert verify_event(EXAMPLE_API_KEY, shouted) is Verdict.VERIFIED


@pytest.mark.parametrize(
    "tampered",
    [
        {"event_type": "fax_busy"},  # the type changed after signing
        {"event_time": "1750105200"},  # the time changed after signing
        {"event_hash": "0" * 64},
        {"event_hash": "not hex at all"},
        {"event_hash": "é" * 64},  # outside ASCII: compared, not raised
    ],
)
def test_a_bad_hash_is_a_mismatch(tampered: dict[str, str]) -> None:
    event = Event.model_validate({**_signed("fax_sent"), **tampered})

    assert verify_event(EXAMPLE_API_KEY, event) is Verdict.MISMATCH


@pytest.mark.parametrize("missing", [None, "", "   "])
def test_a_missing_hash_is_missing(missing: str | None) -> None:
    event = Event.model_validate({**_signed("fax_sent"), "event_hash": missing})

    assert verify_event(EXAMPLE_API_KEY, event) is Verdict.MISSING


def test_an_event_with_no_hash_key_at_all_is_missing() -> None:
    fields = _signed("fax_sent")
    del fields["event_hash"]

    assert verify_event(EXAMPLE_API_KEY, Event.model_validate(fields)) is Verdict.MISSING


def test_a_hash_made_with_another_key_is_a_mismatch() -> None:
    event = Event.model_validate(_signed("fax_sent", key="some other account's key"))

    assert verify_event(EXAMPLE_API_KEY, event) is Verdict.MISMATCH


def test_without_an_api_key_nothing_verifies() -> None:
    # An HMAC keyed with nothing is one anybody can make.
    event = Event.model_validate(_signed("fax_sent", key=""))

    assert verify_event("", event) is Verdict.NO_KEY


def test_a_replayed_event_verifies_each_time() -> None:
    # The provider repeats an event, hash and all, until it is answered; the hash proves
    # who sent it, not that it is new. Telling repeats from news is the tracker's job.
    payload = _transmission_event("fax_sent", "success")

    first = Callback.from_api(payload)
    again = Callback.from_api(payload)

    assert first == again
    assert verify_event(EXAMPLE_API_KEY, first.event) is Verdict.VERIFIED
    assert verify_event(EXAMPLE_API_KEY, again.event) is Verdict.VERIFIED


def test_an_event_time_sent_as_a_number_is_signed_as_its_digits() -> None:
    fields = _signed("fax_sent", event_time="1750105199")
    fields["event_time"] = 1750105199

    event = Event.model_validate(fields)

    assert event.event_time == "1750105199"
    assert event.at == datetime.fromtimestamp(1750105199, tz=UTC)
    assert verify_event(EXAMPLE_API_KEY, event) is Verdict.VERIFIED


# --- the payload --------------------------------------------------------------------------


def test_the_help_pages_shape_reads_with_its_outcome() -> None:
    callback = Callback.from_api(
        _transmission_event("transmission_disconnected", "error_disconnected")
    )

    assert callback.event.is_fax_event
    assert callback.event.event_metadata["reported_for_account_id"] == ACCOUNT
    assert callback.client_id is None
    assert callback.fax is not None
    assert callback.fax.id is None  # the examples' fax-like object carries no fax_id
    assert callback.fax.title == "faxgate J-0001"
    assert callback.fax.metadata == {}
    [report] = callback.reports
    assert report.recipient == "18005550199"
    assert report.status is FaxStatus.ERROR_DISCONNECTED
    assert report.outcome == Outcome(StatusCode.ERROR, ErrorCode.DISCONNECTED)


@pytest.mark.parametrize(
    ("event_type", "status_code", "outcome"),
    [
        ("fax_sent", "success", Outcome(StatusCode.SENT)),
        ("fax_busy", "error_busy", Outcome(StatusCode.ERROR, ErrorCode.BUSY)),
        ("fax_no_answer", "error_no_answer", Outcome(StatusCode.ERROR, ErrorCode.NO_ANSWER)),
        ("fax_on_hold", "on_hold", Outcome(StatusCode.ON_HOLD)),
        # The type's name is never the outcome: the status is.
        ("fax_sent", "error_busy", Outcome(StatusCode.ERROR, ErrorCode.BUSY)),
        ("fax_something_new", "success", Outcome(StatusCode.SENT)),
        ("transmission_updated", "transmitting", Outcome(StatusCode.TRANSMITTING)),
        ("fax_blacklisted", "error_from_the_future", None),
    ],
)
def test_any_fax_event_type_is_read_and_the_outcome_comes_from_the_status(
    event_type: str, status_code: str, outcome: Outcome | None
) -> None:
    callback = Callback.from_api(_transmission_event(event_type, status_code))

    assert callback.event.is_fax_event
    assert [report.outcome for report in callback.reports] == [outcome]


@pytest.mark.parametrize(
    "event_type", ["account_confirmed", "callback_test", "signature_request_sent"]
)
def test_other_event_types_are_read_but_are_no_fax_events(event_type: str) -> None:
    callback = Callback.from_api({"event": _signed(event_type)})

    assert not callback.event.is_fax_event
    assert callback.fax is None
    assert callback.reports == []


def test_a_fax_under_fax_with_its_id_and_extra_keys() -> None:
    fax = dict(fixture_case("FaxResponse.json")["fax"])

    callback = Callback.from_api({"event": _signed("fax_sent"), "fax": fax})

    assert callback.fax is not None
    assert callback.fax.id == FAX_ID
    assert [report.status for report in callback.reports] == [FaxStatus.TRANSMITTING]
    assert callback.reports[0].sent_at is None


def test_a_flat_transmission_carries_its_own_status_and_id() -> None:
    callback = Callback.from_api(
        {
            "event": _signed("transmission_sent"),
            "transmission": {
                "transmission_id": FAX_ID,
                "recipient": "18005550199",
                "status_code": "success",
                "sent_at": "1750105199",
            },
        }
    )

    assert callback.fax is not None
    assert callback.fax.id == FAX_ID
    [report] = callback.reports
    assert (report.recipient, report.status) == ("18005550199", FaxStatus.SUCCESS)
    assert report.sent_at == datetime.fromtimestamp(1750105199, tz=UTC)


def test_an_unreadable_fax_keeps_the_event_and_says_why_without_the_values() -> None:
    payload = _transmission_event("fax_sent", "success", transmissions="18005550199 sent")

    callback = Callback.from_api(payload)

    assert callback.fax is None
    assert callback.fax_problem is not None
    assert "transmissions" in callback.fax_problem
    assert "18005550199" not in callback.fax_problem
    assert verify_event(EXAMPLE_API_KEY, callback.event) is Verdict.VERIFIED


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ("not json", "Expecting value"),
        ('{"event": {"event_time": "1", "event_type": "fax_sent",}}', "Expecting property name"),
        ("[]", "must be a JSON object"),
        ("{}", "event object"),
        ('{"event": {"event_type": "fax_sent", "event_hash": "ab"}}', "event_time"),
        ('{"event": {"event_time": "1750105199"}}', "event_type"),
        ('{"event": {"event_time": {"at": 1}, "event_type": "fax_sent"}}', "event_time"),
        ('{"event": "fax_sent"}', "event object"),
    ],
)
def test_a_payload_without_a_readable_event_is_refused(payload: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Callback.from_api(payload)


def test_an_unreadable_event_time_has_no_time_but_still_verifies() -> None:
    event = Event.model_validate(_signed("fax_sent", event_time="yesterday"))

    assert event.at is None
    assert verify_event(EXAMPLE_API_KEY, event) is Verdict.VERIFIED
