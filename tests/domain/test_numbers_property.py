"""Properties of the number rules (faxgate/domain/numbers.py), on generated input.

- Whatever text comes in, under whatever policy, the answer is a FaxNumber or a
  NumberRefused with a reason: nothing else is ever raised.
- What is accepted is E.164 and reads back to itself, from its own form and from the
  provider's digits.
- A valid number reads the same however it is written: E.164, international, national in
  its own region, with 00, with separators anywhere, in full-width digits.
- Premium-rate and shared-cost numbers are refused unless the policy allows that kind;
  a country outside the allowed list is always refused.

Numbers are made from phonenumbers' example number of a region and kind, with their last
digits changed, and kept when phonenumbers holds them valid and of that kind.
"""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumber, PhoneNumberFormat, PhoneNumberType, ValidationResult

from faxgate.domain.numbers import (
    MAX_INPUT_CHARS,
    FaxNumber,
    NumberPolicy,
    NumberRefused,
    from_provider_digits,
    parse_fax_number,
)

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
COSTLY = (PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST)
ORDINARY = (
    PhoneNumberType.FIXED_LINE,
    PhoneNumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE,
    PhoneNumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER,
    PhoneNumberType.UAN,
)
SEPARATORS = [" ", "-", ".", "(", ")", "\u2013", "\u00a0", "\u2212", "\u3000"]
NUMBERISH = "0123456789+-.() \u2013\uff10\uff11\uff0b\u00a0#*/xX,;ext"


@cache
def regions_with(kind: int) -> list[str]:
    return [r for r in REGIONS if phonenumbers.example_number_for_type(r, kind) is not None]


def policies(
    *, allow_premium: bool = False, allow_shared_cost: bool = False
) -> st.SearchStrategy[NumberPolicy]:
    return st.builds(
        NumberPolicy,
        default_region=st.sampled_from(REGIONS),
        allow_premium=st.just(allow_premium),
        allow_shared_cost=st.just(allow_shared_cost),
    )


ANY_POLICY = st.builds(
    NumberPolicy,
    default_region=st.sampled_from(REGIONS),
    allow_premium=st.booleans(),
    allow_shared_cost=st.booleans(),
    allowed_countries=st.frozensets(st.sampled_from(REGIONS), max_size=3),
)


def usable(number: PhoneNumber) -> bool:
    """What faxgate takes, the policy aside: valid, dialable from afar, at most 15 digits."""
    digits = len(str(number.country_code)) + len(phonenumbers.national_significant_number(number))
    return (
        phonenumbers.is_valid_number(number)
        and phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE
        and digits <= 15
    )


@st.composite
def numbers(draw: st.DrawFn, kinds: tuple[int, ...]) -> tuple[PhoneNumber, str]:
    """A usable number of one of `kinds`, and its region."""
    kind = draw(st.sampled_from(kinds))
    region = draw(st.sampled_from(regions_with(kind)))
    example = phonenumbers.example_number_for_type(region, kind)
    assert example is not None
    significant = phonenumbers.national_significant_number(example)
    changed = draw(st.integers(0, min(4, len(significant) - 1)))
    tail = draw(st.text(alphabet="0123456789", min_size=changed, max_size=changed))
    number = phonenumbers.parse(f"+{example.country_code}{significant[: -changed or None]}{tail}")
    assume(usable(number) and phonenumbers.number_type(number) == kind)
    owner = phonenumbers.region_code_for_number(number)
    assume(owner is not None and owner != "001")  # numbers of no country are not dialled here
    assert owner is not None
    return number, owner


def e164(number: PhoneNumber) -> str:
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def full_width(text: str) -> str:
    return "".join(chr(0xFF10 + int(ch)) if ch.isdigit() else ("\uff0b" if ch == "+" else ch)
                   for ch in text)  # fmt: skip


# ---------------------------------------------------------------------------- any text


def accepted_or_refused(text: str, policy: NumberPolicy) -> FaxNumber | None:
    refusal: NumberRefused | None = None
    try:
        found = parse_fax_number(text, policy)
    except NumberRefused as refused:
        refusal = refused
    if refusal is not None:
        assert refusal.text == text
        assert refusal.reason.strip()
        assert "\n" not in refusal.reason
        return None
    assert E164.fullmatch(found.e164), found
    return found


@PROPERTIES
@given(text=st.one_of(st.text(max_size=MAX_INPUT_CHARS + 10), st.text(NUMBERISH, max_size=30)),
       policy=ANY_POLICY)  # fmt: skip
def test_any_text_gives_a_number_or_a_refusal(text: str, policy: NumberPolicy) -> None:
    found = accepted_or_refused(text, policy)
    if found is None:
        return
    # What was accepted reads back to itself, under the same policy, and as the provider
    # reports it.
    assert parse_fax_number(found.e164, policy) == found
    assert from_provider_digits(found.provider_digits) == found
    if policy.allowed_countries:
        assert found.region in policy.allowed_countries


@PROPERTIES
@given(text=st.text(alphabet="0123456789", min_size=1, max_size=20), policy=ANY_POLICY)
def test_any_digits_with_a_plus_or_00_give_a_number_or_a_refusal(
    text: str, policy: NumberPolicy
) -> None:
    for written in (text, "+" + text, "00" + text):
        accepted_or_refused(written, policy)
    reported = from_provider_digits(text)  # never raises; never another number
    assert reported is None or reported.provider_digits == text


def test_the_providers_digits_are_kept_as_they_are() -> None:
    """Found by the property above: phonenumbers drops a national prefix after the country
    code, which made the provider's 82000000 into +8200000, another number."""
    reported = from_provider_digits("82000000")
    assert reported is None or reported.provider_digits == "82000000"


# ---------------------------------------------------------------------------- valid numbers


@PROPERTIES
@given(number=numbers(ORDINARY), policy=policies(), data=st.data())
def test_a_valid_number_reads_the_same_however_written(
    number: tuple[PhoneNumber, str], policy: NumberPolicy, data: st.DataObject
) -> None:
    parsed, region = number
    expected = e164(parsed)
    international = phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)
    spaced = "".join(ch + data.draw(st.sampled_from(["", "", *SEPARATORS])) for ch in international)
    written = [expected, international, "00" + expected[1:], spaced, full_width(international)]
    for text in written:
        found = parse_fax_number(text, policy)
        assert found.e164 == expected, (text, found)
    at_home = NumberPolicy(default_region=region)
    national = phonenumbers.format_number(parsed, PhoneNumberFormat.NATIONAL)
    assert parse_fax_number(national, at_home).e164 == expected, national
    found = parse_fax_number(expected)
    assert found.region == region
    assert found == from_provider_digits(found.provider_digits)
    assert parse_fax_number(found.display()) == found


# ---------------------------------------------------------------------------- costly numbers


@PROPERTIES
@given(number=numbers(COSTLY), policy=policies(), data=st.data())
def test_premium_and_shared_cost_numbers_are_refused_unless_allowed(
    number: tuple[PhoneNumber, str], policy: NumberPolicy, data: st.DataObject
) -> None:
    parsed, region = number
    kind = phonenumbers.number_type(parsed)
    label = "premium-rate" if kind == PhoneNumberType.PREMIUM_RATE else "shared-cost"
    text = data.draw(
        st.sampled_from(
            [
                e164(parsed),
                "00" + e164(parsed)[1:],
                phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL),
            ]
        )
    )
    with pytest.raises(NumberRefused, match=f"a {label} number"):
        parse_fax_number(text, policy)
    allowing = NumberPolicy(
        default_region=policy.default_region,
        allow_premium=kind == PhoneNumberType.PREMIUM_RATE,
        allow_shared_cost=kind == PhoneNumberType.SHARED_COST,
    )
    assert parse_fax_number(text, allowing).e164 == e164(parsed)
    elsewhere = "US" if region != "US" else "GB"
    outside = NumberPolicy(
        allow_premium=True, allow_shared_cost=True, allowed_countries=frozenset({elsewhere})
    )
    with pytest.raises(NumberRefused, match="are not allowed"):
        parse_fax_number(text, outside)
