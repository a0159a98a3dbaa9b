"""Fax numbers: what a user typed, made E.164, checked against the number policy.

Pure rules, no IO. Input comes from an email local part, a file name, a sidecar file or
the command line, so it is read leniently in form and strictly in substance:

- `-`, `.`, whitespace and parentheses are ignored (so are their full-width and
  typographic look-alikes, which turn up when a number is pasted from a web page);
- a leading `+` or `00` means international; anything else is a national number of the
  policy's default region;
- letters and any other character are refused, as are numbers that `phonenumbers` does
  not hold valid for their country;
- premium-rate and shared-cost numbers are refused unless the policy allows them, and so
  is every country outside the policy's allowed list, when there is one.

A refusal is a `NumberRefused` whose reason is a plain sentence fit for a bounce mail.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    NumberParseException,
    PhoneNumber,
    PhoneNumberFormat,
    PhoneNumberType,
    ValidationResult,
)

__all__ = [
    "FaxNumber",
    "NumberPolicy",
    "NumberRefused",
    "from_provider_digits",
    "parse_fax_number",
]

# Longer input is refused before any work: a formatted international number such as
# "+44 (0) 20 7946 0958" is about twenty characters, so 64 leaves room for any real one.
MAX_INPUT_CHARS = 64

# E.164 allows at most 15 digits, country code included.
_MAX_E164_DIGITS = 15

# phonenumbers' region code for numbers that belong to no country (+800, +882...).
_NON_GEOGRAPHIC_REGION = "001"

_SEPARATORS = frozenset("-.()")


class NumberRefused(ValueError):
    """A fax number that cannot be used; `reason` says why, in plain words."""

    def __init__(self, reason: str, text: str) -> None:
        # Both go to args so that the exception survives pickling.
        super().__init__(reason, text)
        self.reason = reason
        self.text = text

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class NumberPolicy:
    """Which numbers may be dialled, and how national input is read."""

    default_region: str = "US"
    allow_premium: bool = False
    allow_shared_cost: bool = False
    # ISO 3166 region codes; empty allows every country.
    allowed_countries: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        # A typo here would silently misread every national number, so fail at start-up.
        object.__setattr__(self, "default_region", _checked_region(self.default_region))
        object.__setattr__(
            self,
            "allowed_countries",
            frozenset(_checked_region(code) for code in self.allowed_countries),
        )


def _checked_region(code: str) -> str:
    region = code.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        hint = " (the United Kingdom is GB)" if region == "UK" else ""
        raise ValueError(f"unknown region code {code!r}{hint}; use an ISO 3166 code like US")
    return region


@dataclass(frozen=True, slots=True)
class FaxNumber:
    """A fax number in E.164 form, with the region it belongs to when it has one."""

    e164: str  # "+14155550100"
    region: str | None  # "US"; None for numbers of no country (+800...) or unknown

    def __post_init__(self) -> None:
        digits = self.e164[1:]
        if not (
            self.e164.startswith("+")
            and digits.isascii()
            and digits.isdigit()
            and not digits.startswith("0")
            and len(digits) <= _MAX_E164_DIGITS
        ):
            raise ValueError(f"not an E.164 number: {self.e164!r}")

    @property
    def provider_digits(self) -> str:
        """The form HelloFax expects and reports: country code and number, no `+`."""
        return self.e164[1:]

    def display(self) -> str:
        """The international format for people, e.g. "+1 415-555-0100"."""
        return phonenumbers.format_number(
            phonenumbers.parse(self.e164), PhoneNumberFormat.INTERNATIONAL
        )

    def __str__(self) -> str:
        return self.e164


def parse_fax_number(text: str, policy: NumberPolicy = NumberPolicy()) -> FaxNumber:
    """Read a fax number typed by a user; raise NumberRefused when it cannot be used."""
    candidate = _clean(text)
    try:
        number = phonenumbers.parse(candidate, policy.default_region)
    except NumberParseException as error:
        raise NumberRefused(_parse_error_reason(error), text) from None
    _check_valid(number, text)
    _check_policy(number, text, policy)
    return _fax_number(number)


def from_provider_digits(digits: str) -> FaxNumber | None:
    """Read a number as the provider reports it ("14155550100"); None if it is not one.

    No policy applies: these are numbers already dialled or that dialled us. A number
    only needs a known country code and a plausible length, not full validity, so that
    a number range newer than the installed metadata is still recorded. A national
    number without its country code is not guessed at ("4155550100" is None, not US).
    """
    digits = digits.strip().removeprefix("+")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _MAX_E164_DIGITS):
        return None
    try:
        number = phonenumbers.parse("+" + digits)
    except NumberParseException:
        return None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    found = _fax_number(number)
    # phonenumbers drops a national prefix it finds after the country code ("82 0..."):
    # that would record another number than the provider's.
    return found if found.provider_digits == digits else None


def _clean(text: str) -> str:
    """The input stripped of separators: `+` and digits, or a refusal."""
    if len(text) > MAX_INPUT_CHARS:
        raise NumberRefused(
            f"the fax number is too long ({len(text)} characters; a phone number has "
            f"at most {_MAX_E164_DIGITS} digits)",
            text,
        )
    # NFKC turns full-width digits, `+` and parentheses into their ASCII forms.
    normalised = unicodedata.normalize("NFKC", text)
    kept = "".join(char for char in normalised if not _is_separator(char))
    if not kept:
        reason = "the fax number is empty" if not text.strip() else "the fax number has no digits"
        raise NumberRefused(reason, text)
    letters = "".join(char for char in kept if char.isalpha())
    if letters:
        raise NumberRefused(
            f"the fax number contains letters ({letters!r}); it may hold only digits", text
        )

    # `00` is read as international whatever the default region: phonenumbers only
    # understands the region's own international prefix (011 in the US, for example).
    if kept.startswith("+"):
        prefix, rest = "+", kept[1:]
    elif kept.startswith("00"):
        prefix, rest = "00", kept[2:]
    else:
        prefix, rest = "", kept
    for char in rest:
        if char == "+":
            raise NumberRefused("a '+' is allowed only at the start of the fax number", text)
        if not ("0" <= char <= "9"):
            raise NumberRefused(
                f"the fax number contains {char!r}, which has no place in a phone number",
                text,
            )
    if not rest:
        raise NumberRefused(f"the fax number has no digits after the {prefix!r}", text)
    return "+" + rest if prefix else rest


def _is_separator(char: str) -> bool:
    # Category Pd holds every dash (en dash, hyphen, ...); U+2212 is the minus sign.
    return (
        char in _SEPARATORS
        or char.isspace()
        or char == "\u2212"
        or unicodedata.category(char) == "Pd"
    )


def _parse_error_reason(error: NumberParseException) -> str:
    # Input reaching phonenumbers is digits with an optional `+`, so NOT_A_NUMBER can
    # only mean too few digits to look like a phone number at all.
    if error.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return "the fax number does not start with a known country calling code"
    if error.error_type == NumberParseException.TOO_LONG:
        return "the fax number is too long to be a phone number"
    if error.error_type == NumberParseException.TOO_SHORT_AFTER_IDD:
        return "the fax number is too short after its international prefix"
    return "the fax number is too short to be a phone number"


def _check_valid(number: PhoneNumber, text: str) -> None:
    """Refuse numbers that cannot exist, with the most telling reason."""
    possible = phonenumbers.is_possible_number_with_reason(number)
    # phonenumbers holds some German numbers of up to 17 digits valid; E.164, and so
    # the provider, stops at 15.
    e164_digits = len(str(number.country_code)) + len(
        phonenumbers.national_significant_number(number)
    )
    if possible == ValidationResult.IS_POSSIBLE and e164_digits > _MAX_E164_DIGITS:
        possible = ValidationResult.TOO_LONG
    if possible == ValidationResult.IS_POSSIBLE:
        if phonenumbers.is_valid_number(number):
            return
        reason = f"the fax number is not a valid number for {_plan_name(number)}"
    elif possible == ValidationResult.INVALID_COUNTRY_CODE:
        reason = f"+{number.country_code} is not a country calling code"
    elif possible == ValidationResult.TOO_SHORT:
        reason = f"the fax number is too short for {_plan_name(number)}"
    elif possible == ValidationResult.TOO_LONG:
        reason = f"the fax number is too long for {_plan_name(number)}"
    elif possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        # Dialable only from inside its own area; a fax service dials from elsewhere.
        reason = (
            f"the fax number is too short for {_plan_name(number)}; "
            "it looks like a local number without its area code"
        )
    else:  # INVALID_LENGTH: some lengths between the shortest and longest do not exist
        reason = f"the fax number has the wrong number of digits for {_plan_name(number)}"
    raise NumberRefused(reason, text)


def _check_policy(number: PhoneNumber, text: str, policy: NumberPolicy) -> None:
    """Refuse valid numbers the policy does not allow; country first, then cost."""
    if policy.allowed_countries:
        region = phonenumbers.region_code_for_number(number)
        allowed = ", ".join(_region_label(code) for code in sorted(policy.allowed_countries))
        if region is None or region == _NON_GEOGRAPHIC_REGION:
            raise NumberRefused(
                f"the fax number (+{number.country_code}) belongs to no country; "
                f"only numbers in {allowed} are allowed",
                text,
            )
        if region not in policy.allowed_countries:
            raise NumberRefused(
                f"numbers in {_region_label(region)} are not allowed; "
                f"only numbers in {allowed} are",
                text,
            )
    kind = phonenumbers.number_type(number)
    # phonenumbers' own classes: the UK's 084x and 087x service numbers, for one, are
    # premium-rate to it, and Germany's 0180 numbers are shared-cost.
    if kind == PhoneNumberType.PREMIUM_RATE and not policy.allow_premium:
        raise NumberRefused(
            "the fax number is a premium-rate number, and premium-rate numbers are not allowed",
            text,
        )
    if kind == PhoneNumberType.SHARED_COST and not policy.allow_shared_cost:
        raise NumberRefused(
            "the fax number is a shared-cost number, and shared-cost numbers are not allowed",
            text,
        )


def _fax_number(number: PhoneNumber) -> FaxNumber:
    region = phonenumbers.region_code_for_number(number)
    return FaxNumber(
        e164=phonenumbers.format_number(number, PhoneNumberFormat.E164),
        region=None if region == _NON_GEOGRAPHIC_REGION else region,
    )


def _plan_name(number: PhoneNumber) -> str:
    """Names the numbering plan of a number that may be invalid: "Germany (+49)"."""
    code = number.country_code or 0
    regions = phonenumbers.region_codes_for_country_code(code)
    if not regions or regions == (_NON_GEOGRAPHIC_REGION,):
        return f"country code +{code}"
    # Several regions share +1, +7, +44...; the first is the plan's main country.
    others = " and others" if len(regions) > 1 else ""
    return f"{_country_name(regions[0])}{others} (+{code})"


def _region_label(region: str) -> str:
    return f"{_country_name(region)} ({region})"


@functools.cache
def _country_name(region: str) -> str:
    """The English name of a region, or its code when none is known."""
    # Imported on first need: the module loads all of phonenumbers' geographic data,
    # half a second that only a refusal should pay.
    from phonenumbers.geodata.locale import LOCALE_DATA

    names = LOCALE_DATA.get(region, {})
    name = names.get("en", "")
    if name.startswith("*"):  # "*aa": the name is kept under another language
        name = names.get(name[1:], "")
    return name or region


def display_number(e164: str) -> str:
    """The number as people write it (+1 415-555-0100); anything unreadable as it is."""
    try:
        return FaxNumber(e164, None).display()
    except (ValueError, phonenumbers.NumberParseException):
        return e164
