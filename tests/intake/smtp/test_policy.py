"""The listener's pure rules: recipients, senders, limits, lines, exposure, reply text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from faxgate.domain.numbers import FaxNumber, NumberPolicy
from faxgate.intake.smtp.policy import (
    RecipientRules,
    Refusal,
    check_sender,
    daily_limit_reached,
    exposure_problem,
    line_for,
    normalise_sender,
    read_recipient,
    reply_text,
    sender_matches,
    start_of_day,
    too_many_recipients,
)

RULES = RecipientRules.of(["fax.local", "Fax.Example.COM."], NumberPolicy(default_region="US"))


@pytest.mark.parametrize(
    ("address", "e164"),
    [
        ("14155550100@fax.local", "+14155550100"),
        ("+14155550100@fax.local", "+14155550100"),
        ("415-555-0100@fax.local", "+14155550100"),
        ("1.415.555.0100@FAX.LOCAL", "+14155550100"),
        ("00442079460958@fax.example.com", "+442079460958"),
        ("+44(0)2079460958@fax.example.com.", "+442079460958"),
        ('"+1 415 555 0100"@fax.local', "+14155550100"),
        ("<14155550100@fax.local>", "+14155550100"),
    ],
)
def test_fax_addresses_in_every_usual_form(address: str, e164: str) -> None:
    found = read_recipient(address, RULES)
    assert isinstance(found, FaxNumber), found
    assert found.e164 == e164


@pytest.mark.parametrize(
    ("address", "code", "status", "reason"),
    [
        ("bob@example.com", 550, "5.1.1", "relay"),
        ("14155550100@fax.local.example.com", 550, "5.1.1", "relay"),
        ("14155550100", 550, "5.1.1", "relay"),
        ("@fax.local", 550, "5.1.1", "relay"),
        ("victim%example.com@fax.local", 550, "5.1.1", "relay"),
        ("example.com!victim@fax.local", 550, "5.1.1", "relay"),
        ('"victim@example.com"@fax.local', 550, "5.1.1", "relay"),
        ("12345@fax.local", 553, "5.1.3", "bad_number"),
        ("call-me@fax.local", 553, "5.1.3", "bad_number"),
        ("+999123456@fax.local", 553, "5.1.3", "bad_number"),
        ("19005550100@fax.local", 550, "5.7.1", "forbidden_number"),
    ],
)
def test_other_recipients_are_refused(address: str, code: int, status: str, reason: str) -> None:
    refusal = read_recipient(address, RULES)
    assert isinstance(refusal, Refusal)
    assert (refusal.code, refusal.status, refusal.reason) == (code, status, reason)
    assert str(refusal).startswith(f"{code} {status} <{address.strip('<>')}>")


def test_a_country_outside_the_allowed_list_is_forbidden_not_malformed() -> None:
    rules = RecipientRules.of(["fax.local"], NumberPolicy(allowed_countries=frozenset({"US"})))
    refusal = read_recipient("+442079460958@fax.local", rules)
    assert isinstance(refusal, Refusal)
    assert (refusal.code, refusal.status) == (550, "5.7.1")
    assert "United Kingdom" in refusal.text


def test_recipients_up_to_the_limit() -> None:
    assert too_many_recipients(9, 10) is None
    refusal = too_many_recipients(10, 10)
    assert refusal is not None
    assert str(refusal) == "452 4.5.3 too many fax recipients; at most 10 per message"
    assert refusal.temporary


# ---------------------------------------------------------------------------- senders


@pytest.mark.parametrize(
    ("sender", "entry", "matches"),
    [
        ("alice@example.com", "alice@example.com", True),
        ("alice@example.com", "ALICE@example.com", True),
        ("bob@example.com", "alice@example.com", False),
        ("alice@example.com", "@example.com", True),
        ("alice@sub.example.com", "@example.com", False),
        ("alice@sub.example.com", "*@*.example.com", True),
        ("alice@example.com", "*@*.example.com", False),
        ("scan-7@office.example.com", "scan-?@office.example.com", True),
        ("", "*", False),
        ("no-domain", "*", False),
    ],
)
def test_allowlist_entries(sender: str, entry: str, matches: bool) -> None:
    assert sender_matches(sender, [entry]) is matches


def test_who_may_send() -> None:
    allowed = ["@example.com"]
    assert (
        check_sender("a@example.com", authenticated=False, allowed=allowed, auth_offered=False)
        is None
    )
    assert (
        check_sender("a@other.org", authenticated=True, allowed=allowed, auth_offered=True) is None
    )
    assert (
        check_sender("a@example.com", authenticated=False, allowed=allowed, auth_offered=True)
        is None
    )
    not_listed = check_sender(
        "a@other.org", authenticated=False, allowed=allowed, auth_offered=False
    )
    assert not_listed is not None
    assert (not_listed.code, not_listed.status) == (550, "5.7.1")
    must_login = check_sender(
        "a@other.org", authenticated=False, allowed=allowed, auth_offered=True
    )
    assert must_login is not None
    assert (must_login.code, must_login.status) == (530, "5.7.0")
    # No allowlist and no users: anyone (faxgate then listens on loopback only).
    assert check_sender("", authenticated=False, allowed=[], auth_offered=False) is None


def test_senders_are_compared_in_lower_case_and_the_null_sender_is_empty() -> None:
    assert normalise_sender("<>") == ""
    assert normalise_sender("Alice@Example.COM") == "alice@example.com"


def test_the_daily_limit() -> None:
    assert daily_limit_reached(100, 5, 0) is None  # no limit
    assert daily_limit_reached(8, 2, 10) is None
    refusal = daily_limit_reached(9, 2, 10)
    assert refusal is not None
    assert (refusal.code, refusal.status) == (452, "4.7.1")


def test_days_start_at_midnight_utc() -> None:
    late = datetime(2024, 5, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert start_of_day(late) == datetime(2024, 5, 2, tzinfo=UTC)


def test_the_line_to_send_from() -> None:
    lines = {
        "alice": "14155550001",
        "bob@example.com": "14155550002",
        "@example.com": "14155550003",
    }
    assert line_for("carol@x.org", "alice", lines, "") == "14155550001"
    assert line_for("bob@example.com", None, lines, "") == "14155550002"
    assert line_for("carol@example.com", None, lines, "") == "14155550003"
    assert line_for("carol@x.org", None, lines, "14155550009") == "14155550009"
    assert line_for("carol@x.org", None, lines, "") is None
    assert line_for("", None, lines, "") is None


# ---------------------------------------------------------------------------- exposure


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_may_be_open(host: str) -> None:
    assert exposure_problem(host, has_users=False, has_allowlist=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "mail.example.com"])
def test_elsewhere_needs_users_or_an_allowlist(host: str) -> None:
    problem = exposure_problem(host, has_users=False, has_allowlist=False)
    assert problem is not None
    assert "anyone could send faxes" in problem
    assert exposure_problem(host, has_users=True, has_allowlist=False) is None
    assert exposure_problem(host, has_users=False, has_allowlist=True) is None


def test_reply_text_is_one_ascii_line() -> None:
    assert reply_text("Bestätigung.zip:\nnot\tfaxable") == "Bestatigung.zip: not faxable"
    long = reply_text("x " * 400)
    assert len(long) <= 400
    assert long.endswith("...")
