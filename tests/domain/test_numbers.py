"""Fax numbers: user input to E.164, refusals with their reasons, the provider's form."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable

import pytest

from faxgate.domain.numbers import (
    MAX_INPUT_CHARS,
    FaxNumber,
    NumberPolicy,
    NumberRefused,
    from_provider_digits,
    parse_fax_number,
)

US = NumberPolicy(default_region="US")
GB = NumberPolicy(default_region="GB")
DE = NumberPolicy(default_region="DE")

E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@pytest.mark.parametrize(
    ("text", "policy", "e164", "region"),
    [
        # United States: national, with or without the trunk prefix 1
        ("4155550100", US, "+14155550100", "US"),
        ("14155550100", US, "+14155550100", "US"),
        ("415-555-0100", US, "+14155550100", "US"),
        ("415.555.0100", US, "+14155550100", "US"),
        ("(415) 555 0100", US, "+14155550100", "US"),
        ("1 (415) 555-0100", US, "+14155550100", "US"),
        ("  415 555 0100\n", US, "+14155550100", "US"),
        # the sandbox's fictional numbers stay valid
        ("+1 415 555 0001", US, "+14155550001", "US"),
        # United States: international with + and 00
        ("+14155550100", US, "+14155550100", "US"),
        ("+1-415-555-0100", US, "+14155550100", "US"),
        ("0014155550100", US, "+14155550100", "US"),
        ("004420794609 58", US, "+442079460958", "GB"),
        ("+44 (0) 20 7946 0958", US, "+442079460958", "GB"),
        ("+1 416 555 0100", US, "+14165550100", "CA"),
        # the US's own international prefix is understood too
        ("011 44 20 7946 0958", US, "+442079460958", "GB"),
        # pasted from a web page: en dashes, full-width digits, no-break spaces
        ("415\u2013555\u20130100", US, "+14155550100", "US"),
        ("\uff0b\uff11\u00a0\uff14\uff11\uff15\u00a0555\u00a00100", US, "+14155550100", "US"),
        # United Kingdom
        ("020 7946 0958", GB, "+442079460958", "GB"),
        ("02079460958", GB, "+442079460958", "GB"),
        ("(0161) 496-0000", GB, "+441614960000", "GB"),
        ("+44 20 7946 0958", GB, "+442079460958", "GB"),
        ("0044 20 7946 0958", GB, "+442079460958", "GB"),
        ("00 1 415 555 0100", GB, "+14155550100", "US"),
        ("+1 415 555 0100", GB, "+14155550100", "US"),
        # Germany
        ("030 12345678", DE, "+493012345678", "DE"),
        ("(030) 1234-5678", DE, "+493012345678", "DE"),
        ("089.1234567", DE, "+49891234567", "DE"),
        ("+49 30 12345678", DE, "+493012345678", "DE"),
        ("0049 30 12345678", DE, "+493012345678", "DE"),
        ("0033 1 23 45 67 89", DE, "+33123456789", "FR"),
        # a number of no country has no region
        ("+800 1234 5678", US, "+80012345678", None),
    ],
)
def test_accepted_numbers(text: str, policy: NumberPolicy, e164: str, region: str | None) -> None:
    number = parse_fax_number(text, policy)
    assert number == FaxNumber(e164=e164, region=region)
    assert E164.fullmatch(number.e164)


@pytest.mark.parametrize(
    ("text", "policy", "reason"),
    [
        # nothing there
        ("", US, "empty"),
        ("   ", US, "empty"),
        ("-.( )", US, "no digits"),
        ("+", US, "no digits after the '+'"),
        ("00", GB, "no digits after the '00'"),
        # letters and stray characters
        ("1-800-FLOWERS", US, "letters ('FLOWERS')"),
        ("415 555 0100 ext 12", US, "letters ('ext')"),
        ("fax", US, "letters"),
        ("+1 415 555 0100;12", US, "';'"),
        ("415#5550100", US, "'#'"),
        ("+1+4155550100", US, "'+' is allowed only at the start"),
        ("415 555 0100+", US, "'+' is allowed only at the start"),
        # too short
        ("1", US, "too short to be a phone number"),
        ("415", US, "too short for United States and others (+1)"),
        ("+1 415 555 010", US, "too short for United States and others (+1)"),
        ("555 0100", US, "without its area code"),
        ("+4930", GB, "too short for Germany (+49)"),
        # too long
        ("1" * (MAX_INPUT_CHARS + 1), US, f"too long ({MAX_INPUT_CHARS + 1} characters"),
        ("123456789012345678901", US, "too long to be a phone number"),
        ("+1 415 555 01000", US, "too long for United States and others (+1)"),
        ("+49 30 1234567890123", US, "too long for Germany (+49)"),
        # within Germany's lengths, but beyond the 15 digits of E.164
        ("030 123456789012", DE, "too long for Germany (+49)"),
        # no such country
        ("+999 123 4567", US, "does not start with a known country calling code"),
        ("00999 123 4567", DE, "does not start with a known country calling code"),
        # possible lengths, but invalid for the country
        ("+1 976 555 0100", US, "not a valid number for United States and others (+1)"),
        ("020 7946 095", GB, "not a valid number for United Kingdom and others (+44)"),
        ("+44 7700 900123", DE, "not a valid number for United Kingdom and others (+44)"),
        ("0123 4567890", DE, "not a valid number for Germany (+49)"),
        # national in the default region: a GB number read as German is not valid
        ("020 7946 0958", DE, "not a valid number for Germany (+49)"),
        # premium rate
        ("1-900-555-0100", US, "premium-rate"),
        ("+1 900 555 0100", GB, "premium-rate"),
        ("0906 123 4567", GB, "premium-rate"),
        ("0845 123 4567", GB, "premium-rate"),
        ("+44 906 123 4567", US, "premium-rate"),
        ("0900 1 234567", DE, "premium-rate"),
        ("+49 900 1 234567", US, "premium-rate"),
        # shared cost
        ("0180 5 123456", DE, "shared-cost"),
        ("+49 180 1 234567", US, "shared-cost"),
        ("+33 810 12 34 56", GB, "shared-cost"),
    ],
)
def test_refused_numbers(text: str, policy: NumberPolicy, reason: str) -> None:
    with pytest.raises(NumberRefused) as caught:
        parse_fax_number(text, policy)
    assert reason in caught.value.reason
    assert caught.value.text == text


@pytest.mark.parametrize(
    ("text", "policy", "e164"),
    [
        ("1-900-555-0100", NumberPolicy(allow_premium=True), "+19005550100"),
        ("0906 123 4567", NumberPolicy("GB", allow_premium=True), "+449061234567"),
        ("0900 1 234567", NumberPolicy("DE", allow_premium=True), "+499001234567"),
        ("0180 5 123456", NumberPolicy("DE", allow_shared_cost=True), "+491805123456"),
        ("+33 810 12 34 56", NumberPolicy(allow_shared_cost=True), "+33810123456"),
    ],
)
def test_policy_switches_allow_costly_numbers(text: str, policy: NumberPolicy, e164: str) -> None:
    assert parse_fax_number(text, policy).e164 == e164


def test_each_cost_switch_allows_only_its_own_kind() -> None:
    only_premium = NumberPolicy("DE", allow_premium=True)
    only_shared_cost = NumberPolicy("DE", allow_shared_cost=True)
    with pytest.raises(NumberRefused, match="shared-cost"):
        parse_fax_number("0180 5 123456", only_premium)
    with pytest.raises(NumberRefused, match="premium-rate"):
        parse_fax_number("0900 1 234567", only_shared_cost)


NORTH_AMERICA = NumberPolicy(allowed_countries=frozenset({"US", "CA"}))


@pytest.mark.parametrize(
    ("text", "region"),
    [("+1 415 555 0100", "US"), ("416 555 0100", "CA")],
)
def test_allowed_countries_let_listed_countries_through(text: str, region: str) -> None:
    assert parse_fax_number(text, NORTH_AMERICA).region == region


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "+44 20 7946 0958",
            "numbers in United Kingdom (GB) are not allowed; "
            "only numbers in Canada (CA), United States (US) are",
        ),
        ("0049 30 12345678", "numbers in Germany (DE) are not allowed"),
        # shares +1 with the US, yet is a country of its own
        ("+1 242 357 1234", "numbers in Bahamas (BS) are not allowed"),
        ("+800 1234 5678", "(+800) belongs to no country"),
    ],
)
def test_allowed_countries_refuse_the_others_by_name(text: str, reason: str) -> None:
    with pytest.raises(NumberRefused) as caught:
        parse_fax_number(text, NORTH_AMERICA)
    assert reason in caught.value.reason


def test_allowed_countries_are_checked_before_the_cost() -> None:
    with pytest.raises(NumberRefused, match=r"Germany \(DE\) are not allowed"):
        parse_fax_number("+49 900 1 234567", NORTH_AMERICA)


def test_policy_normalises_region_codes() -> None:
    policy = NumberPolicy(default_region=" gb", allowed_countries=frozenset({"de", "Fr"}))
    assert policy.default_region == "GB"
    assert policy.allowed_countries == frozenset({"DE", "FR"})
    assert parse_fax_number("0033 1 23 45 67 89", policy).region == "FR"


@pytest.mark.parametrize(
    ("make_policy", "message"),
    [
        (lambda: NumberPolicy(default_region="XX"), "unknown region code 'XX'"),
        (lambda: NumberPolicy(default_region="UK"), "the United Kingdom is GB"),
        (
            lambda: NumberPolicy(allowed_countries=frozenset({"US", "001"})),
            "unknown region code '001'",
        ),
    ],
)
def test_policy_refuses_unknown_region_codes(
    make_policy: Callable[[], NumberPolicy], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make_policy()


@pytest.mark.parametrize(
    ("text", "policy", "provider_digits", "display"),
    [
        ("415-555-0100", US, "14155550100", "+1 415-555-0100"),
        ("020 7946 0958", GB, "442079460958", "+44 20 7946 0958"),
        ("030 12345678", DE, "493012345678", "+49 30 12345678"),
        ("+800 1234 5678", US, "80012345678", "+800 1234 5678"),
    ],
)
def test_provider_digits_and_display(
    text: str, policy: NumberPolicy, provider_digits: str, display: str
) -> None:
    number = parse_fax_number(text, policy)
    assert number.provider_digits == provider_digits
    assert number.display() == display
    assert str(number) == number.e164


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("14155550100", FaxNumber("+14155550100", "US")),
        ("+14155550100", FaxNumber("+14155550100", "US")),
        (" 442079460958\n", FaxNumber("+442079460958", "GB")),
        ("14165550100", FaxNumber("+14165550100", "CA")),
        ("80012345678", FaxNumber("+80012345678", None)),
        # no policy: a premium-rate number the provider reports is still read
        ("19005550100", FaxNumber("+19005550100", "US")),
        # nothing to read
        ("", None),
        ("Anonymous", None),
        ("1415555010O", None),
        ("+1 415 555 0100", None),
        ("0000000000", None),
        ("1415", None),
        ("1415555010012345", None),
    ],
)
def test_from_provider_digits(digits: str, expected: FaxNumber | None) -> None:
    assert from_provider_digits(digits) == expected


def test_from_provider_digits_reads_back_what_is_sent() -> None:
    for text, policy in [("415 555 0100", US), ("020 7946 0958", GB), ("030 12345678", DE)]:
        number = parse_fax_number(text, policy)
        assert from_provider_digits(number.provider_digits) == number


@pytest.mark.parametrize("e164", ["14155550100", "+", "+0123456", "+1415555010012345", "+1 415"])
def test_fax_number_refuses_what_is_not_e164(e164: str) -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 number"):
        FaxNumber(e164=e164, region=None)


def test_number_refused_carries_reason_and_input() -> None:
    with pytest.raises(NumberRefused) as caught:
        parse_fax_number("call me")
    refused = caught.value
    assert isinstance(refused, ValueError)
    assert str(refused) == refused.reason
    assert refused.text == "call me"
    copy = pickle.loads(pickle.dumps(refused))  # noqa: S301 (our own bytes)
    assert (copy.reason, copy.text) == (refused.reason, refused.text)
