"""Which route an inbound fax takes: rules on the line it came in on and its sender. Pure.

A rule names the lines (`to`) and senders (`from`) it applies to, each as numbers or simple
patterns; a rule leaves out what it does not care about. The first rule that matches wins;
a fax no rule matches takes the default route. Each route lists email recipients, an
output folder, or both.

Numbers are compared in E.164. An exact number is read with faxgate.domain.numbers, so
"+1 415 555 0100", "(415) 555-0100" (national, in the default region) and "14155550100"
(the provider's digits, when the default region reads them so) all mean the same line. A
pattern holds `*` (any digits, none included) or `?` (one digit) and is written in
international form, `+` first: "+1415555*", "+44*". It is matched against the digits after
the `+`, so a pattern may also start with a wildcard: "*0100". A number the provider did
not give (an anonymous sender) matches no pattern: only a rule that leaves `from` out
applies to it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import TYPE_CHECKING, Final, Literal, Protocol

if TYPE_CHECKING:
    from faxgate.domain.numbers import NumberPolicy

__all__ = [
    "DEFAULT_ROUTE",
    "DeliveryTarget",
    "NumberPattern",
    "Route",
    "RoutingTable",
    "check_address",
    "check_pattern_syntax",
    "parse_pattern",
]

DEFAULT_ROUTE: Final = "default"
WILDCARDS: Final = frozenset("*?")
_MAX_PATTERN_CHARS: Final = 64
_SEPARATORS: Final = frozenset("-.() ")
_ADDRESS: Final = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+")

DeliveryKind = Literal["email", "folder"]


@dataclass(frozen=True, slots=True)
class NumberPattern:
    """One number or pattern of a rule, as written and as compiled."""

    text: str  # as written in the settings
    exact: str | None = None  # E.164, for an exact number
    digits: re.Pattern[str] | None = None  # for a pattern: matched against the digits

    def matches(self, e164: str | None) -> bool:
        if e164 is None:
            return False
        if self.exact is not None:
            return e164 == self.exact
        assert self.digits is not None
        return self.digits.fullmatch(e164.removeprefix("+")) is not None


def _clean(text: str) -> str:
    normalised = unicodedata.normalize("NFKC", text.strip())
    return "".join(c for c in normalised if c not in _SEPARATORS and not c.isspace())


def _is_pattern(text: str) -> bool:
    return any(c in WILDCARDS for c in text)


def _pattern_digits(text: str) -> str:
    """The digits and wildcards of a pattern after its `+`, or ValueError saying why not."""
    kept = _clean(text)
    if len(text) > _MAX_PATTERN_CHARS:
        raise ValueError(f"{text!r} is too long for a fax number pattern")
    if kept.startswith("+"):
        body = kept[1:]
    elif kept.startswith("00"):
        body = kept[2:]
    elif kept[:1] in WILDCARDS:
        body = kept
    else:
        raise ValueError(
            f"the pattern {text!r} must be in international form, starting with + "
            "(for example +1415555*)"
        )
    bad = sorted({c for c in body if not (c.isascii() and c.isdigit()) and c not in WILDCARDS})
    if bad:
        raise ValueError(f"the pattern {text!r} may hold only digits, * and ?, not {bad[0]!r}")
    if not body:
        raise ValueError(f"the pattern {text!r} has nothing after the +")
    return body


def check_pattern_syntax(text: str) -> str:
    """What the settings can check without the number policy; the text, stripped.

    Patterns are checked fully. Exact numbers are only checked for their characters: a
    national number needs the default region, which the daemon applies when it starts.
    """
    if not text.strip():
        raise ValueError("a number or pattern cannot be empty")
    if _is_pattern(text):
        _pattern_digits(text)
    else:
        kept = _clean(text)
        body = kept.removeprefix("+")
        if not body or not (body.isascii() and body.isdigit()):
            raise ValueError(
                f"{text!r} is not a fax number: give digits (+1 415 555 0100) or a pattern "
                "with * or ? (+1415555*)"
            )
    return text.strip()


def check_address(text: str) -> str:
    """An email recipient of a route ("sales@example.com" or "Sales <sales@example.com>")."""
    written = text.strip()
    _, address = parseaddr(written)
    well_formed = written == address or written.endswith(f"<{address}>")
    if not (_ADDRESS.fullmatch(address) and well_formed) or any(c in written for c in ",;\r\n"):
        raise ValueError(f"{text!r} is not an email address (give one address per entry)")
    return written


def parse_pattern(text: str, policy: NumberPolicy) -> NumberPattern:
    """Compile a number or pattern; ValueError (a NumberRefused for numbers) says why not."""
    if _is_pattern(text):
        body = _pattern_digits(text)
        regex = "".join(r"\d*" if c == "*" else r"\d" if c == "?" else re.escape(c) for c in body)
        return NumberPattern(text=text.strip(), digits=re.compile(regex))
    # Imported here: phonenumbers is a tenth of the settings' import time, and the settings
    # check only the syntax (check_pattern_syntax).
    from faxgate.domain.numbers import NumberPolicy, parse_fax_number

    # Numbers of every kind are allowed here: a rule only compares, it never dials.
    lenient = NumberPolicy(
        default_region=policy.default_region, allow_premium=True, allow_shared_cost=True
    )
    try:
        exact = parse_fax_number(text, lenient).e164
    except ValueError as exc:
        raise ValueError(f"{text.strip()!r}: {exc}") from None
    return NumberPattern(text=text.strip(), exact=exact)


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One place a fax goes: one mail to a list of recipients, or one folder."""

    kind: DeliveryKind
    recipients: tuple[str, ...] = ()  # for email
    folder: str = ""  # for folder

    @property
    def target(self) -> str:
        """How people read it: the addresses, or the folder."""
        return ", ".join(self.recipients) if self.kind == "email" else self.folder


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    email: tuple[str, ...] = ()
    folder: str = ""  # "" for none
    to: tuple[NumberPattern, ...] = ()  # empty: any line
    from_: tuple[NumberPattern, ...] = ()  # empty: any sender, unknown ones too

    def matches(self, to: str | None, from_: str | None) -> bool:
        """Does this rule apply to a fax to line `to` from `from_` (both E.164 or None)?"""
        return _any_matches(self.to, to) and _any_matches(self.from_, from_)

    def targets(self) -> list[DeliveryTarget]:
        """Where the fax goes: the mail first (people wait for it), then the folder."""
        found = []
        if self.email:
            found.append(DeliveryTarget("email", recipients=self.email))
        if self.folder:
            found.append(DeliveryTarget("folder", folder=self.folder))
        return found


def _any_matches(patterns: Sequence[NumberPattern], number: str | None) -> bool:
    return not patterns or any(pattern.matches(number) for pattern in patterns)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    rules: tuple[Route, ...]
    default: Route

    def route(self, to: str | None, from_: str | None) -> Route:
        """The first rule that matches, else the default route."""
        return next((rule for rule in self.rules if rule.matches(to, from_)), self.default)

    @classmethod
    def build(
        cls,
        rules: Iterable[RuleSpec],
        *,
        default_email: Sequence[str],
        default_folder: str,
        policy: NumberPolicy,
    ) -> RoutingTable:
        """Compile the rules as the settings give them; ValueError names the bad rule."""
        compiled = []
        for position, rule in enumerate(rules, start=1):
            name = rule.name or f"route {position}"
            try:
                compiled.append(
                    Route(
                        name=name,
                        email=tuple(rule.email),
                        folder=rule.folder,
                        to=tuple(parse_pattern(text, policy) for text in rule.to),
                        from_=tuple(parse_pattern(text, policy) for text in rule.from_),
                    )
                )
            except ValueError as exc:
                raise ValueError(f"inbound route {name!r}: {exc}") from None
        default = Route(DEFAULT_ROUTE, email=tuple(default_email), folder=default_folder)
        return cls(tuple(compiled), default)


class RuleSpec(Protocol):
    """What `RoutingTable.build` reads of a rule (the settings' route section has it)."""

    @property
    def name(self) -> str: ...
    @property
    def to(self) -> Sequence[str]: ...
    @property
    def from_(self) -> Sequence[str]: ...
    @property
    def email(self) -> Sequence[str]: ...
    @property
    def folder(self) -> str: ...
