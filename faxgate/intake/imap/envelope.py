"""What stands for the SMTP envelope of a message found in a mailbox. Pure: no IO.

A message delivered into a mailbox has lost its envelope; its headers keep what is left:
- the sender is the From address, the one hosted mail checks against the sending domain
  (SPF, DKIM, DMARC) and the one people see; a Return-Path of "<>" marks a bounce, the
  null sender, whatever From says;
- the recipients are the addresses of Delivered-To and X-Original-To (written by the
  server that delivered it: the true envelope recipients, Bcc included), then To and Cc.
  Those that are not fax addresses here (the other people the message went to) are
  passed over; those that are fax addresses but cannot be faxed (a number the policy
  forbids) are named in the reply.

Each address then goes through the SMTP listener's own rules (address_recipient), so a
mailbox takes exactly the addresses the listener takes.
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from typing import Final

from faxgate.domain.addressing import Destination
from faxgate.intake.smtp.accept import Fax
from faxgate.intake.smtp.policy import (
    FromSubject,
    RecipientRules,
    Refusal,
    address_recipient,
    normalise_sender,
)

ENVELOPE_HEADERS: Final = ("Delivered-To", "X-Original-To")
RECIPIENT_HEADERS: Final = ("To", "Cc")
_PARSER = BytesHeaderParser(policy=email.policy.compat32)  # raw values: never raises


@dataclass(frozen=True, slots=True)
class MailboxEnvelope:
    sender: str  # normalised; "" for the null sender or none at all
    recipients: tuple[str, ...]  # every address named, envelope headers first, once each


@dataclass(frozen=True, slots=True)
class Addressed:
    """The faxes the recipients ask for, as the listener would have taken them."""

    faxes: list[Fax] = field(default_factory=list)
    from_subject: list[str] = field(default_factory=list)  # shared addresses
    problems: list[str] = field(default_factory=list)  # fax addresses that cannot be faxed


def read_envelope(raw: bytes) -> MailboxEnvelope:
    headers = _PARSER.parsebytes(_header_block(raw))
    return MailboxEnvelope(_sender(headers), _recipients(headers))


def _sender(headers: Message) -> str:
    if str(headers.get("Return-Path") or "").strip() == "<>":
        return ""
    senders = [addr for _, addr in getaddresses([str(v) for v in headers.get_all("From", [])])]
    senders = [addr for addr in senders if addr]
    if len(senders) != 1 or any(ord(ch) < 33 or ord(ch) == 127 for ch in senders[0]):
        return ""  # none, several or a malformed one: no one to trust or answer
    return normalise_sender(senders[0])


def _recipients(headers: Message) -> tuple[str, ...]:
    found: dict[str, str] = {}
    for name in (*ENVELOPE_HEADERS, *RECIPIENT_HEADERS):
        values = [str(value) for value in headers.get_all(name, [])]
        pairs = (
            [parseaddr(value) for value in values]
            if name in ENVELOPE_HEADERS
            else getaddresses(values)
        )
        for _, address in pairs:
            address = address.strip()
            if "@" in address and address.isprintable():
                found.setdefault(address.lower(), address)
    return tuple(found.values())


def address_message(
    envelope: MailboxEnvelope, rules: RecipientRules, max_recipients: int
) -> Addressed | Refusal:
    """The faxes a message asks for, or the refusal to tell its sender."""
    addressed = Addressed()
    for address in envelope.recipients:
        found = address_recipient(address, rules)
        if isinstance(found, Refusal):
            if found.reason != "relay":  # a fax address here that cannot be faxed
                addressed.problems.append(found.text)
            continue
        if isinstance(found, FromSubject):
            if found.address not in addressed.from_subject:
                addressed.from_subject.append(found.address)
            continue
        _add(addressed, address, found, max_recipients)
    if not addressed.faxes and not addressed.from_subject:
        text = "\n".join(addressed.problems) or (
            "the message is addressed to no fax address here: send it to"
            " NUMBER@<fax domain>, or to a shared fax address with the number in the subject"
        )
        return Refusal(550, "5.1.1", text, "unknown_recipient")
    return addressed


def _add(addressed: Addressed, address: str, found: Sequence[Destination], limit: int) -> None:
    known = {fax.number.e164 for fax in addressed.faxes}
    for destination in found:
        number = destination.number
        if number.e164 in known:
            continue
        if len(addressed.faxes) >= limit:
            addressed.problems.append(
                f"<{address}>: too many fax recipients; at most {limit} per message"
            )
            return
        addressed.faxes.append(
            Fax(number, recipient=address, cover_to=destination.cover_to or None)
        )
        known.add(number.e164)


def _header_block(raw: bytes) -> bytes:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return raw[: min(ends) + 2] if ends else raw
