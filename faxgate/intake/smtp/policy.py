"""Who may send what through the SMTP listener. Pure rules, no IO.

Each rule answers with None (go on) or a Refusal: the SMTP reply, with an enhanced status
code (RFC 3463), and a short reason name for the metrics.

- Recipients: `<number>@<fax domain>`. Any other domain, and any local part that tries
  to route mail further ("a%b@fax.local", "a!b@fax.local"), is not ours: 550 5.1.1. A
  number that is not one: 553 5.1.3; one the number policy forbids (premium rate, a
  country not allowed): 550 5.7.1. The reason is in the reply text. Where [addressing]
  allows them (faxgate.domain.addressing): a name or group of the address book at a fax
  domain, `fax+<number>@` a plus address, and a shared address whose numbers come from
  the subject, read at DATA.
- Senders: a logged-in user may send from any address. Anyone else must match the
  allowlist when there is one: an address, "@domain", or a shell pattern ("*@*.example").
  The null sender (bounces) matches nothing.
- The listener may be open to anyone only on loopback: elsewhere it needs users or an
  allowlist.
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from faxgate.domain.addressing import (
    AddressBook,
    AddressRefused,
    Destination,
    plus_address_number,
)
from faxgate.domain.numbers import FaxNumber, NumberPolicy, NumberRefused, parse_fax_number

NULL_SENDER: Final = "<>"
MAX_REPLY_TEXT: Final = 400
MAX_REPLY_LINES: Final = 10
_ENCODED_CHUNK_BYTES: Final = 45  # base64 of 45 bytes is 60 characters: a word within 75
# Characters that ask a server to relay further: the percent hack, bang paths, a second @.
_ROUTING_CHARACTERS: Final = frozenset("%!@")
_PATTERN_CHARACTERS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    status: str  # the enhanced status code, e.g. "5.1.1"
    text: str
    reason: str  # a name for the metrics, e.g. "unknown_recipient"

    def __str__(self) -> str:
        """The reply: one line for each line of the text (a multiline reply, RFC 5321)."""
        lines = reply_lines(self.text)
        return "\r\n".join(
            f"{self.code}{' ' if last else '-'}{self.status} {line}"
            for line, last in zip(lines, [False] * (len(lines) - 1) + [True], strict=True)
        )

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


def reply_lines(text: str) -> list[str]:
    """The text's lines, each fit for a reply line, at most MAX_REPLY_LINES of them."""
    lines = [line for line in (reply_text(line) for line in text.splitlines()) if line]
    if len(lines) > MAX_REPLY_LINES:
        more = len(lines) - MAX_REPLY_LINES + 1
        lines = [*lines[: MAX_REPLY_LINES - 1], f"and {more} more reasons"]
    return lines or [""]


def reply_text(text: str) -> str:
    """Text fit for one SMTP reply line: ASCII, no line breaks, not too long.

    A word in Latin letters with accents loses its accents ("Müller" is "Muller"); any
    other word that is not ASCII ("사진.JPG", a file name) is kept whole as an RFC 2047
    encoded word, which the sender's mail program can show as written.
    """
    words = "".join(ch if ch.isprintable() else " " for ch in text).split()
    one_line = " ".join(word if word.isascii() else _ascii_word(word) for word in words)
    if len(one_line) > MAX_REPLY_TEXT:
        one_line = one_line[: MAX_REPLY_TEXT - 3].rstrip() + "..."
    return one_line


def _ascii_word(word: str) -> str:
    latin = unicodedata.normalize("NFKD", word)
    plain = "".join(ch for ch in latin if not unicodedata.combining(ch))
    if plain.isascii():
        return plain
    return " ".join(_encoded_words(word))


def _encoded_words(word: str) -> list[str]:
    """The word as RFC 2047 encoded words, each within 75 characters."""
    pieces: list[str] = []
    chunk = ""
    for ch in word:
        if len((chunk + ch).encode()) > _ENCODED_CHUNK_BYTES:
            pieces.append(chunk)
            chunk = ""
        chunk += ch
    pieces.append(chunk)
    return [f"=?UTF-8?B?{base64.b64encode(piece.encode()).decode('ascii')}?=" for piece in pieces]


# ---------------------------------------------------------------------------- recipients


@dataclass(frozen=True, slots=True)
class RecipientRules:
    domains: frozenset[str]
    numbers: NumberPolicy
    subject_addresses: frozenset[str] = frozenset()
    plus_addresses: frozenset[str] = frozenset()
    plus_delimiter: str = "+"
    book: AddressBook = field(default_factory=AddressBook)

    @classmethod
    def of(
        cls,
        domains: Iterable[str],
        numbers: NumberPolicy,
        *,
        subject_addresses: Iterable[str] = (),
        plus_addresses: Iterable[str] = (),
        plus_delimiter: str = "+",
        book: AddressBook | None = None,
    ) -> RecipientRules:
        return cls(
            frozenset(domain.lower().rstrip(".") for domain in domains),
            numbers,
            frozenset(address.lower() for address in subject_addresses),
            frozenset(address.lower() for address in plus_addresses),
            plus_delimiter,
            book or AddressBook(),
        )


@dataclass(frozen=True, slots=True)
class FromSubject:
    """A shared address: its fax numbers lead the message's subject, read at DATA."""

    address: str


def address_recipient(
    address: str, rules: RecipientRules
) -> tuple[Destination, ...] | FromSubject | Refusal:
    """What an envelope recipient asks for, in every form [addressing] allows."""
    bare = address.strip().strip("<>")
    if bare.lower() in rules.subject_addresses:
        return FromSubject(bare.lower())
    plus = plus_address_number(bare, rules.plus_addresses, rules.plus_delimiter)
    if plus is not None:
        number = _number(address, plus, rules.numbers)
        return number if isinstance(number, Refusal) else (Destination(number, "", bare),)
    local, _, domain = bare.rpartition("@")
    ours = domain.lower().rstrip(".") in rules.domains
    if ours and not rules.book.empty and not any(ch in _ROUTING_CHARACTERS for ch in local):
        try:
            named = rules.book.lookup(_unquoted(local))
        except AddressRefused as refused:
            return Refusal(550, "5.1.1", f"<{address}>: {refused.reason}", "unknown_recipient")
        if named is not None:
            return named
        if not any(ch.isdigit() for ch in local):
            return Refusal(
                550,
                "5.1.1",
                f"<{address}>: neither a fax number nor a name in the address book",
                "unknown_recipient",
            )
    found = read_recipient(address, rules)
    return found if isinstance(found, Refusal) else (Destination(found, "", bare),)


def subject_refusal(refused: AddressRefused) -> Refusal:
    """The answer at DATA for a shared address's subject that names no fax to send."""
    if refused.kind == "too_many":
        return Refusal(550, "5.5.3", refused.reason, "too_many_recipients")
    if refused.kind == "forbidden_number":
        return Refusal(550, "5.7.1", refused.reason, "forbidden_number")
    return Refusal(550, "5.1.3", refused.reason, "no_number_in_subject")


def read_recipient(address: str, rules: RecipientRules) -> FaxNumber | Refusal:
    """The fax number an envelope recipient names, or the refusal for RCPT."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    local = _unquoted(local)
    if not at or domain.lower().rstrip(".") not in rules.domains:
        return Refusal(550, "5.1.1", f"<{address}>: not a fax address here; no relaying", "relay")
    if not local or any(ch in _ROUTING_CHARACTERS for ch in local):
        return Refusal(550, "5.1.1", f"<{address}>: not a fax address here; no relaying", "relay")
    return _number(address, local, rules.numbers)


def _number(address: str, text: str, policy: NumberPolicy) -> FaxNumber | Refusal:
    try:
        return parse_fax_number(text, policy)
    except NumberRefused as refused:
        reason = refused.reason
    # Not a number at all, or one the policy forbids? Two answers, two codes.
    try:
        parse_fax_number(text, _permissive(policy))
    except NumberRefused:
        return Refusal(553, "5.1.3", f"<{address}>: {reason}", "bad_number")
    return Refusal(550, "5.7.1", f"<{address}>: {reason}", "forbidden_number")


def _permissive(policy: NumberPolicy) -> NumberPolicy:
    """The policy with every check switched off: what is left is "is it a number at all"."""
    return NumberPolicy(
        default_region=policy.default_region, allow_premium=True, allow_shared_cost=True
    )


def _unquoted(local: str) -> str:
    # A quoted local part ("+1 415 555 0100"@fax.local) with its escapes undone.
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        inner = local[1:-1]
        out, escaped = [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return local


def too_many_recipients(accepted: int, limit: int) -> Refusal | None:
    """Refuse the next fax recipient when `accepted` already reach the limit."""
    if accepted < limit:
        return None
    return Refusal(
        452, "4.5.3", f"too many fax recipients; at most {limit} per message", "too_many_recipients"
    )


# ---------------------------------------------------------------------------- senders


def normalise_sender(address: str) -> str:
    """The envelope sender in lower case; "" for the null sender."""
    address = address.strip()
    return "" if address in (NULL_SENDER, "") else address.strip("<>").lower()


def sender_matches(sender: str, allowed: Iterable[str]) -> bool:
    """Does a (normalised) sender match an allowlist entry?"""
    if not sender or "@" not in sender:
        return False
    domain = sender.rpartition("@")[2]
    for entry in allowed:
        entry = entry.lower()
        if any(ch in _PATTERN_CHARACTERS for ch in entry):
            if fnmatch.fnmatchcase(sender, entry):
                return True
        elif entry.startswith("@"):
            if domain == entry[1:]:
                return True
        elif sender == entry:
            return True
    return False


def check_sender(
    sender: str, *, authenticated: bool, allowed: Iterable[str], auth_offered: bool
) -> Refusal | None:
    """May this envelope sender send (at MAIL FROM)?"""
    allowed = list(allowed)
    if authenticated or sender_matches(sender, allowed):
        return None
    if auth_offered:
        return Refusal(
            530, "5.7.0", "authentication required: log in after STARTTLS", "auth_required"
        )
    if allowed:
        shown = f"<{sender}>" if sender else "the null sender"
        return Refusal(550, "5.7.1", f"{shown} may not send faxes here", "sender_not_allowed")
    return None


def daily_limit_reached(sent_today: int, adding: int, limit: int) -> Refusal | None:
    """Refuse when `adding` more faxes would pass the sender's daily limit (0: none)."""
    if limit <= 0 or sent_today + adding <= limit:
        return None
    return Refusal(
        452,
        "4.7.1",
        f"daily limit of {limit} faxes reached for this sender; try again tomorrow (UTC)",
        "daily_limit",
    )


def start_of_day(now: datetime) -> datetime:
    """Midnight UTC of the day `now` falls in: daily limits count from there."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def line_for(
    sender: str, login: str | None, sender_lines: Mapping[str, str], default_line: str
) -> str | None:
    """The line to send from: the user's, the address's, the domain's, the default; None
    for the account's primary line."""
    keys = [login.lower()] if login else []
    if sender:
        keys += [sender, "@" + sender.rpartition("@")[2]]
    for key in keys:
        if key in sender_lines:
            return sender_lines[key]
    return default_line or None


# ---------------------------------------------------------------------------- exposure


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def exposure_problem(host: str, *, has_users: bool, has_allowlist: bool) -> str | None:
    """Why the listener must not start, or None: never an open fax relay."""
    if is_loopback(host) or has_users or has_allowlist:
        return None
    return (
        f"the SMTP listener on {host} is reachable beyond this machine but anyone could send "
        "faxes through it: set smtp.users (with TLS) or smtp.allowed_senders, "
        "or listen on 127.0.0.1"
    )
