"""Addressing a fax as offices do: numbers in the subject, plus-addressing, contacts."""

from __future__ import annotations

import tomllib

import pytest

from faxgate.domain.addressing import (
    MAX_SUBJECT_CHARS,
    AddressBook,
    AddressRefused,
    address_book_from_csv,
    address_book_from_toml,
    numbers_in_subject,
    plus_address_number,
)
from faxgate.domain.numbers import NumberPolicy, parse_fax_number

POLICY = NumberPolicy()


def e164(subject: str, limit: int = 10) -> tuple[list[str], str]:
    found = numbers_in_subject(subject, POLICY, limit)
    return [number.e164 for number in found.numbers], found.rest


# ---------------------------------------------------------------------------- subject


@pytest.mark.parametrize(
    ("subject", "numbers", "rest"),
    [
        ("Fax to +1 415 555 0100", ["+14155550100"], ""),
        ("+1 415 555 0100", ["+14155550100"], ""),
        ("fax: (415) 555-0100 - the contract", ["+14155550100"], "the contract"),
        ("FAX TO 415.555.0100: Prescription", ["+14155550100"], "Prescription"),
        ("To: +44 20 7946 0000 | Quote 2024", ["+442079460000"], "Quote 2024"),
        (
            "Fax to +1 415 555 0100, +1 212 555 0199; 0044 20 7946 0000 Contract",
            ["+14155550100", "+12125550199", "+442079460000"],
            "Contract",
        ),
        ("fax 4155550100 and 2125550199", ["+14155550100", "+12125550199"], ""),
        # The same number twice is one fax.
        ("4155550100, 415-555-0100: hi", ["+14155550100"], "hi"),
        # A number after the text is never read: an order number cannot become a fax.
        ("Fax to 415-555-0100 re: order 12125550199", ["+14155550100"], "re: order 12125550199"),
        ("Fax to\r\n +1 415 555 0100\tnote", ["+14155550100"], "note"),
    ],
)
def test_numbers_lead_the_subject(subject: str, numbers: list[str], rest: str) -> None:
    assert e164(subject) == (numbers, rest)


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "Fax to",
        "Invoice 123456789 dated 2024-05-01",
        "Please fax this to 415 555 0100",  # the number does not lead
        "Re: Fax to +1 415 555 0100",
        "Fax to nobody",
        "\u202e0010 555 514 1+ ot xaF",  # a right-to-left override, reversed text
    ],
)
def test_a_subject_without_a_leading_number_is_refused_with_the_rule(subject: str) -> None:
    with pytest.raises(AddressRefused) as refused:
        numbers_in_subject(subject, POLICY, 10)
    assert refused.value.kind == "no_number"
    assert '"Fax to +1 415 555 0100: the contract"' in str(refused.value)


def test_more_numbers_than_the_limit_are_refused() -> None:
    subject = ", ".join(f"+1 415 555 01{n:02d}" for n in range(11))
    with pytest.raises(AddressRefused) as refused:
        numbers_in_subject(subject, POLICY, 10)
    assert refused.value.kind == "too_many"
    assert "names 11 fax numbers; at most 10" in str(refused.value)


def test_a_number_the_policy_forbids_is_named() -> None:
    with pytest.raises(AddressRefused) as refused:
        numbers_in_subject("Fax to +1 900 555 0100", POLICY, 10)
    assert refused.value.kind == "forbidden_number"
    assert str(refused.value).startswith("+1 900 555 0100: ")
    only_us = NumberPolicy(allowed_countries=frozenset({"US"}))
    with pytest.raises(AddressRefused, match=r"^\+44 20 7946 0000: "):
        numbers_in_subject("+44 20 7946 0000", only_us, 10)


def test_a_hostile_subject_is_read_only_so_far() -> None:
    huge = "+1 415 555 0100, " * 100_000 + "tail"
    with pytest.raises(AddressRefused) as refused:
        numbers_in_subject(huge, POLICY, 10)
    assert refused.value.kind == "too_many"
    # Numbers beyond the first MAX_SUBJECT_CHARS are not there at all.
    padded = "Fax to +1 415 555 0100 " + "x" * MAX_SUBJECT_CHARS + " +1 212 555 0199"
    assert e164(padded)[0] == ["+14155550100"]


def test_full_width_digits_as_pasted_from_a_web_page() -> None:
    assert e164("Fax to ＋１ ４１５ ５５５ ０１００")[0] == ["+14155550100"]


# ---------------------------------------------------------------------------- plus


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("fax+14155550100@company.com", "14155550100"),
        ("<FAX+14155550100@Company.COM>", "14155550100"),
        ("fax+1-415-555-0100@company.com", "1-415-555-0100"),
        ("fax@company.com", None),
        ("fax+@company.com", None),
        ("sales+14155550100@company.com", None),
        ("fax+14155550100@elsewhere.com", None),
        ("fax+14155550100", None),
    ],
)
def test_plus_addressing(address: str, expected: str | None) -> None:
    assert plus_address_number(address, ["fax@company.com", "telefax@company.com"]) == expected


def test_plus_addressing_with_another_delimiter() -> None:
    # Postfix's recipient_delimiter may be "-" where "+" is taken.
    shared = ["fax@company.com"]
    assert plus_address_number("fax-14155550100@company.com", shared, "-") == "14155550100"
    assert plus_address_number("fax+14155550100@company.com", shared, "-") is None


# ---------------------------------------------------------------------------- contacts

GOOD_TOML = """
[contacts.drsmith]
number = "+1 415 555 0100"
cover = "Dr Smith"

[contacts."north.side"]
number = "(212) 555-0199"

[groups]
pharmacies = ["drsmith", "North.Side", "+1 646 555 0142", "+1 415 555 0100"]
"""


def toml_book(text: str, max_group_size: int = 20) -> AddressBook:
    return address_book_from_toml(tomllib.loads(text), POLICY, max_group_size)


def test_contacts_and_groups_from_toml() -> None:
    book = toml_book(GOOD_TOML)
    assert book.problems == ()
    found = book.lookup("DrSmith")
    assert found is not None
    (smith,) = found
    assert smith.number == parse_fax_number("+1 415 555 0100")
    assert smith.cover_to == "Dr Smith"
    group = book.lookup("pharmacies") or ()
    # Members named, and the same number twice faxed once.
    assert [d.number.e164 for d in group] == ["+14155550100", "+12125550199", "+16465550142"]
    assert [d.cover_to for d in group] == ["Dr Smith", "", ""]
    assert book.lookup("nobody") is None


def test_bad_entries_are_named_and_the_rest_still_work() -> None:
    book = toml_book(
        GOOD_TOML
        + """
billing = ["drsmith", "broken"]
empty = []
odd = [1, 2]

[contacts.broken]
number = "not a number"

[contacts.premium]
number = "+1 900 555 0100"
cover = "Premium"

[contacts."bad name!"]
number = "+1 415 555 0101"

[contacts.extra]
number = "+1 415 555 0102"
fax = "?"
"""
    )
    assert book.lookup("drsmith") is not None
    assert book.lookup("pharmacies") is not None
    problems = "\n".join(book.problems)
    assert "contacts.broken: its number:" in problems
    assert "contacts.premium: its number:" in problems
    assert "'bad name!' cannot be an address name" in problems
    assert "contacts.extra: unknown keys fax" in problems
    assert "group billing: its member broken cannot be used" in problems
    assert "group empty: the group has no members" in problems
    assert "groups.odd: a group lists names or numbers" in problems
    # Mail to a name left out is refused saying why; a group is never sent in part.
    for name in ("broken", "billing", "premium"):
        with pytest.raises(AddressRefused, match=f"^{name} is in the address book but cannot"):
            book.lookup(name)


def test_a_group_past_its_size_limit_is_left_out() -> None:
    book = toml_book(GOOD_TOML, max_group_size=2)
    with pytest.raises(AddressRefused, match="3 numbers, more than the 2 a group may have"):
        book.lookup("pharmacies")


def test_a_group_named_like_a_contact_is_left_out() -> None:
    book = toml_book(GOOD_TOML + 'drsmith = ["+1 646 555 0142"]\n')
    assert [d.number.e164 for d in book.lookup("drsmith") or ()] == ["+14155550100"]
    assert any("a contact has the same name" in problem for problem in book.problems)


def test_unknown_tables_are_named() -> None:
    book = toml_book("[people.x]\nnumber = '1'\n")
    assert book.problems == ("'people': unknown table (expected contacts and groups)",)


def test_contacts_from_csv_as_a_spreadsheet_writes_it() -> None:
    text = (
        "\ufeffName,Number,Cover,Groups\r\n"
        'drsmith,"+1 415 555 0100","Smith, Dr",pharmacies;doctors\r\n'
        "northside,(212) 555-0199,,pharmacies\r\n"
        "\r\n"
        "broken,12,,doctors\r\n"
        "toomany,+1 415 555 0101,x,y,z\r\n"
    )
    book = address_book_from_csv(text, POLICY, 20)
    found = book.lookup("drsmith")
    assert found is not None
    (smith,) = found
    assert smith.cover_to == "Smith, Dr"
    assert [d.addressed_as for d in book.lookup("pharmacies") or ()] == ["drsmith", "northside"]
    with pytest.raises(AddressRefused):
        book.lookup("doctors")  # its member broken cannot be used
    problems = "\n".join(book.problems)
    assert "line 5: its number:" in problems
    assert "line 6: more fields than the header names" in problems


def test_a_csv_without_the_columns_says_so() -> None:
    book = address_book_from_csv("who,fax\nx,1\n", POLICY, 20)
    assert book.problems == ("line 1: the header must name the columns name and number",)
    assert book.lookup("x") is None
