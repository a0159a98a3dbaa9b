"""Ways to address a fax beyond NUMBER@fax-domain, as offices do it. Pure rules, no IO.

- The number in the subject of mail to a shared address ("Subject: Fax to +1 415 555
  0100, +1 212 555 0199: the contract"): the numbers must lead the subject, after an
  optional "Fax", "Fax to" or "To"; the rest of the subject is kept for the cover page.
  Numbers further on are never read, so an order or invoice number in the text cannot
  become a fax number.
- Plus-addressing: `fax+14155550100@company.com`, the part after the delimiter read as a
  number, for a configured set of shared local parts.
- An address book: `drsmith@fax.local` faxes a contact, `pharmacies@fax.local` every
  member of a group, up to a size limit. Read from TOML or CSV; an entry that is wrong is
  left out and named, the others still work.

Every refusal is an `AddressRefused` whose reason is a plain sentence for the sender.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import phonenumbers

from faxgate.domain.numbers import FaxNumber, NumberPolicy, NumberRefused, parse_fax_number

__all__ = [
    "AddressBook",
    "AddressRefused",
    "Destination",
    "SubjectFax",
    "address_book_from_csv",
    "address_book_from_toml",
    "numbers_in_subject",
    "plus_address_number",
]

# Subjects are read this far: enough for ten numbers and a title, bounded for hostile mail.
MAX_SUBJECT_CHARS: Final = 500
# A name as an email local part may carry it, and as `faxgate contacts` shows it.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_LEADING_WORDS = re.compile(r"^\s*(?:fax\s+to|fax|to)\b\s*[:#]?\s*", re.IGNORECASE)
# What may stand between two numbers of the list, and between the list and the rest.
_BETWEEN_NUMBERS = re.compile(r"^(?:\s*[,;&/]\s*|\s+and\s+|\s+)$", re.IGNORECASE)
_INTERNATIONAL_00 = re.compile(r"(?<![\d+])00(?=[1-9])")
_AFTER_NUMBERS = re.compile(r"^\s*[:\-\u2013\u2014|]*\s*")

RefusalKind = Literal["unknown", "bad_number", "forbidden_number", "too_many", "no_number"]


class AddressRefused(ValueError):
    """A recipient or subject that names no fax destination faxgate may send to."""

    def __init__(self, reason: str, kind: RefusalKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[type[AddressRefused], tuple[str, RefusalKind]]:
        # Raised in the message readers' processes: it must cross back whole.
        return (type(self), (self.reason, self.kind))


@dataclass(frozen=True, slots=True)
class Destination:
    """One fax to send: the number, the name for the cover page, how it was addressed."""

    number: FaxNumber
    cover_to: str = ""
    addressed_as: str = ""


# ---------------------------------------------------------------------------- subject


@dataclass(frozen=True, slots=True)
class SubjectFax:
    """The numbers leading a subject, and the rest of it for the cover page."""

    numbers: tuple[FaxNumber, ...]
    rest: str


def numbers_in_subject(subject: str, policy: NumberPolicy, limit: int) -> SubjectFax:
    """The fax numbers a subject starts with (after "Fax", "Fax to" or "To").

    Raises AddressRefused when it starts with none, with more than `limit`, or with one the
    policy forbids (the sender hears which).
    """
    text = " ".join(subject[:MAX_SUBJECT_CHARS].split())
    leading = _LEADING_WORDS.match(text)
    position = leading.end() if leading else 0
    found: list[tuple[str, int]] = []  # (the number as written, where it ends)
    # "00" starts an international number here as everywhere in faxgate (numbers.py);
    # written " +" it keeps every position of the text.
    readable = _INTERNATIONAL_00.sub(" +", text)
    matches = phonenumbers.PhoneNumberMatcher(
        readable, policy.default_region, leniency=phonenumbers.Leniency.VALID
    )
    for match in matches:
        if match.start < position:
            continue  # inside the leading words
        gap = readable[position : match.start]
        allowed = _BETWEEN_NUMBERS.match(gap) if found else not gap.strip()
        if not allowed:
            break  # other text first: the list has ended, or never began
        found.append((readable[match.start : match.end], match.end))
        position = match.end
    if not found:
        raise AddressRefused(
            "the subject must start with the fax number, for example "
            '"Fax to +1 415 555 0100: the contract"',
            "no_number",
        )
    if len(found) > limit:
        raise AddressRefused(
            f"the subject names {len(found)} fax numbers; at most {limit} per message",
            "too_many",
        )
    numbers = []
    for raw, _ in found:
        try:
            numbers.append(parse_fax_number(raw, policy))
        except NumberRefused as refused:
            raise AddressRefused(f"{raw}: {refused.reason}", "forbidden_number") from None
    rest = _AFTER_NUMBERS.sub("", text[found[-1][1] :], count=1).strip()
    return SubjectFax(tuple(dict.fromkeys(numbers)), rest)


# ---------------------------------------------------------------------------- plus


def plus_address_number(
    address: str, plus_addresses: Iterable[str], delimiter: str = "+"
) -> str | None:
    """The number part of `fax+14155550100@company.com` when `fax@company.com` takes
    plus-addressing; None when the address is not plus-addressed to one of them."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    base, found, extension = local.partition(delimiter)
    if not at or not found or not extension:
        return None
    shared = {entry.strip().lower() for entry in plus_addresses}
    if f"{base}@{domain}".lower() not in shared:
        return None
    return extension


# ---------------------------------------------------------------------------- contacts


@dataclass(frozen=True)
class AddressBook:
    """Contacts and groups by lower-case name; `problems` names each entry left out."""

    contacts: Mapping[str, Destination] = field(default_factory=dict)
    groups: Mapping[str, tuple[Destination, ...]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # Names left out for a problem, with it: mail to them is refused saying why.
    broken: Mapping[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Whether the book holds no name at all, usable or not."""
        return not (self.contacts or self.groups or self.broken)

    def lookup(self, name: str) -> tuple[Destination, ...] | None:
        """What a local part names: one contact, a group's members, or None for a name
        the book does not hold. Raises AddressRefused for a name left out."""
        key = name.lower()
        if key in self.contacts:
            return (self.contacts[key],)
        if key in self.groups:
            return self.groups[key]
        if key in self.broken:
            raise AddressRefused(
                f"{key} is in the address book but cannot be used: {self.broken[key]}",
                "unknown",
            )
        return None


class _Builder:
    """Collects entries, keeping every problem instead of stopping at the first."""

    def __init__(self, policy: NumberPolicy, max_group_size: int) -> None:
        self.policy = policy
        self.max_group_size = max_group_size
        self.contacts: dict[str, Destination] = {}
        self.group_members: dict[str, list[str]] = {}
        self.problems: list[str] = []
        self.broken: dict[str, str] = {}

    def problem(self, where: str, text: str, name: str | None = None) -> None:
        """Note a problem; with `name`, that name is left out of the book for it."""
        self.problems.append(f"{where}: {text}")
        if name is not None:
            self.broken.setdefault(name, text)

    def contact(self, where: str, name: Any, number: Any, cover: Any) -> None:
        key = self._name(where, name)
        if key is None:
            return
        if key in self.contacts:
            self.problem(where, f"contact {key!r} is listed twice; the first is kept")
        elif not isinstance(number, str) or not number.strip():
            self.problem(where, "the contact has no number", key)
        elif cover is not None and not isinstance(cover, str):
            self.problem(where, "the contact's cover name must be text", key)
        else:
            try:
                parsed = parse_fax_number(number, self.policy)
            except NumberRefused as refused:
                self.problem(where, f"its number: {refused.reason}", key)
                return
            self.contacts[key] = Destination(parsed, (cover or "").strip(), key)

    def group(self, where: str, name: Any, members: Any) -> None:
        key = self._name(where, name)
        if key is None:
            return
        if isinstance(members, str):
            members = [members]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            self.problem(where, "a group lists names or numbers", key)
            return
        self.group_members.setdefault(key, []).extend(members)

    def _name(self, where: str, name: Any) -> str | None:
        key = name.strip().lower() if isinstance(name, str) else ""
        if not _NAME.match(key):
            self.problem(
                where, f"{name!r} cannot be an address name (letters, digits, '.', '-', '_')"
            )
            return None
        return key

    def build(self) -> AddressBook:
        groups: dict[str, tuple[Destination, ...]] = {}
        for key, members in self.group_members.items():
            where = f"group {key}"
            if key in self.contacts or key in self.broken:
                self.problem(where, "a contact has the same name; the group is left out")
                continue
            resolved = self._members(where, key, members)
            if resolved is None:
                continue
            if len(resolved) > self.max_group_size:
                self.problem(
                    where,
                    f"{len(resolved)} numbers, more than the {self.max_group_size} a group"
                    " may have",
                    key,
                )
                continue
            groups[key] = resolved
        return AddressBook(dict(self.contacts), groups, tuple(self.problems), dict(self.broken))

    def _members(
        self, where: str, group: str, members: list[str]
    ) -> tuple[Destination, ...] | None:
        """The group's destinations, or None when one member cannot be used: a group is
        faxed whole or not at all, never with someone silently left out."""
        resolved: dict[FaxNumber, Destination] = {}
        for member in members:
            name = member.strip().lower()
            contact = self.contacts.get(name)
            if contact is not None:
                resolved.setdefault(contact.number, contact)
                continue
            if name in self.broken:
                self.problem(where, f"its member {name} cannot be used", group)
                return None
            try:
                number = parse_fax_number(member, self.policy)
            except NumberRefused as refused:
                self.problem(
                    where,
                    f"its member {member!r} is neither a contact nor a number ({refused.reason})",
                    group,
                )
                return None
            resolved.setdefault(number, Destination(number, "", group))
        if not resolved:
            self.problem(where, "the group has no members", group)
            return None
        return tuple(resolved.values())


def address_book_from_toml(
    data: Mapping[str, Any], policy: NumberPolicy, max_group_size: int
) -> AddressBook:
    """From a parsed TOML file::

    [contacts.drsmith]
    number = "+1 415 555 0100"
    cover = "Dr Smith"

    [groups]
    pharmacies = ["drsmith", "+1 212 555 0199"]
    """
    builder = _Builder(policy, max_group_size)
    for key in data:
        if key not in ("contacts", "groups"):
            builder.problem(repr(key), "unknown table (expected contacts and groups)")
    contacts = data.get("contacts", {})
    if not isinstance(contacts, Mapping):
        builder.problem("contacts", "expected [contacts.NAME] tables")
        contacts = {}
    for name, entry in contacts.items():
        where = f"contacts.{name}"
        if not isinstance(entry, Mapping):
            builder.problem(where, "expected number = ... and cover = ...", str(name).lower())
            continue
        unknown = set(entry) - {"number", "cover"}
        if unknown:
            builder.problem(where, f"unknown keys {', '.join(sorted(unknown))}", str(name).lower())
            continue
        builder.contact(where, name, entry.get("number"), entry.get("cover"))
    groups = data.get("groups", {})
    if not isinstance(groups, Mapping):
        builder.problem("groups", "expected NAME = [members]")
        groups = {}
    for name, members in groups.items():
        builder.group(f"groups.{name}", name, members)
    return builder.build()


def address_book_from_csv(text: str, policy: NumberPolicy, max_group_size: int) -> AddressBook:
    """From CSV with a header row: name, number, cover (optional), groups (optional,
    names separated by ';')::

        name,number,cover,groups
        drsmith,+1 415 555 0100,Dr Smith,pharmacies;doctors
    """
    builder = _Builder(policy, max_group_size)
    # Spreadsheet programs often start the file with a byte-order mark.
    rows = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    header = [column.strip().lower() for column in rows.fieldnames or []]
    if "name" not in header or "number" not in header:
        builder.problem("line 1", "the header must name the columns name and number")
        return builder.build()
    rows.fieldnames = header
    for row in rows:
        where = f"line {rows.line_num}"
        if None in row:
            builder.problem(where, "more fields than the header names")
            continue
        name = row.get("name") or ""
        if not name.strip() and not (row.get("number") or "").strip():
            continue  # a blank line
        builder.contact(where, name, row.get("number"), row.get("cover"))
        for group in (row.get("groups") or "").split(";"):
            if group.strip():
                builder.group(where, group, [name.strip().lower()])
    return builder.build()
