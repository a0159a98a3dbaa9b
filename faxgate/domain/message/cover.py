"""The cover page: whether one is wanted, and the names on it."""

from __future__ import annotations

import re
from email.message import Message

from faxgate.domain.message.headers import _header_text, _mailboxes
from faxgate.domain.message.text import tidy_text
from faxgate.domain.message.values import _COVER_OFF_VALUES, CoverMode


def _cover_wanted(mode: CoverMode, message: Message, *, carries_body: bool) -> bool:
    if (_header_text(message, "x-fax-cover") or "").lower() in _COVER_OFF_VALUES:
        return False
    return mode is CoverMode.ALWAYS or (mode is CoverMode.WHEN_BODY and carries_body)


def _recipient_name(message: Message, recipient: str) -> str | None:
    for name, address in _mailboxes(message, "to") + _mailboxes(message, "cc"):
        if _same_mailbox(address, recipient):
            return _display_name(name, address)
    return None


def _sender_name(message: Message) -> str | None:
    senders = _mailboxes(message, "from")
    if not senders:
        return None
    name, address = senders[0]
    return _display_name(name, address) or tidy_text(address).strip("\"' ") or None


def _display_name(name: str, address: str) -> str | None:
    """A name worth printing: not empty, not an address (Outlook often repeats it)."""
    cleaned = tidy_text(name).strip("\"' ")
    if not cleaned or "@" in cleaned or cleaned.lower() == address.partition("@")[0].lower():
        return None
    return cleaned


def _same_mailbox(address: str, recipient: str) -> bool:
    """Equal addresses, or the same domain and the same digits (+1415... vs 1415...)."""
    left, right = (a.strip().strip("<>").lower() for a in (address, recipient))
    if left == right:
        return True
    local_left, _, domain_left = left.rpartition("@")
    local_right, _, domain_right = right.rpartition("@")
    digits_left = re.sub(r"[^0-9]", "", local_left)
    return (
        bool(digits_left)
        and domain_left == domain_right
        and (digits_left == re.sub(r"[^0-9]", "", local_right))
    )
