"""From a received message and its envelope to what the listener stores. Pure: no IO.

faxgate.domain.message reads the message (documents, cover page); this adds what the
envelope knows: who sent it, the line to send from, where the reply goes and whether one
may go at all (faxgate.domain.autoreply, RFC 3834), and the facts the reply will need
(intake_ref: the original Message-ID and Subject, the sender, the login).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any, NotRequired, TypedDict

from faxgate.domain.addressing import AddressRefused, numbers_in_subject
from faxgate.domain.autoreply import may_reply
from faxgate.domain.jobs import PRIORITY_HEADERS, mail_priority
from faxgate.domain.message import MAIL_POLICY, CoverMode, FaxContent, fax_content
from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.smtp.accept import Fax, MailToFax

_HEADER_PARSER = BytesHeaderParser(policy=MAIL_POLICY)


@dataclass(frozen=True, slots=True)
class SubjectRule:
    """Shared addresses among the recipients: their numbers lead the subject."""

    addresses: Sequence[str]
    numbers: NumberPolicy
    max_faxes: int  # faxes one message may have, those of the other recipients included


class MailOptions(TypedDict):
    """read_mail's keyword arguments, for those that pass them on."""

    sender: str
    login: str | None
    faxes: Sequence[Fax]
    cover: CoverMode
    from_line: str | None
    from_subject: NotRequired[SubjectRule | None]


def read_mail(
    raw: bytes,
    *,
    sender: str,
    login: str | None,
    faxes: Sequence[Fax],
    cover: CoverMode,
    from_line: str | None,
    from_subject: SubjectRule | None = None,
) -> MailToFax:
    """What to store for a message to `faxes` (and to the numbers its subject names, for
    shared addresses) from `sender` ("" for the null sender).

    Raises faxgate.domain.message.MessageRefused when there is nothing faxgate can fax,
    faxgate.domain.addressing.AddressRefused when a shared address's subject names no
    fax it may send.
    """
    headers = _HEADER_PARSER.parsebytes(_header_block(raw))
    cover_subject = None
    if from_subject is not None and from_subject.addresses:
        faxes, cover_subject = _with_subject_faxes(headers, faxes, from_subject)
    if not faxes:
        raise ValueError("a message to fax needs at least one fax recipient")
    first = fax_content(raw, recipient=faxes[0].recipient, cover=cover, cover_subject=cover_subject)
    named = [_named(faxes[0], first.cover_to, first.cover_page)]
    # The cover page's addressee is the name the message gives that very address: worth
    # reading the message again for each only when it names anyone.
    others_named = _has_cover(first) and _names_someone(headers)
    for fax in faxes[1:]:
        cover_to = _cover_to(raw, fax.recipient, cover) if others_named else None
        named.append(_named(fax, cover_to, first.cover_page))
    allowed, why_not = may_reply(sender, headers)
    intake_ref: dict[str, Any] = {
        "sender": sender,
        "message_id": first.message_id,
        "subject": first.subject,
    }
    if login:
        intake_ref["login"] = login
    if first.skipped:
        intake_ref["skipped"] = list(first.skipped)
    if not allowed:
        intake_ref["no_reply"] = why_not
    return MailToFax(
        raw=raw,
        faxes=named,
        documents=first.documents,
        cover_from=first.cover_from,
        cover_message=first.cover_message,
        from_line=from_line,
        reply_to=reply_address(headers, sender) if allowed else None,
        intake_ref={key: value for key, value in intake_ref.items() if value is not None},
        priority=mail_priority(_priority_headers(headers), first.subject),
    )


def _priority_headers(headers: Message) -> dict[str, str]:
    """Only the headers that can mark a priority: parsing every header would cost a
    hostile message's megabyte Subject seconds (the parser is quadratic in a line)."""
    return {
        name: str(value) for name in PRIORITY_HEADERS if (value := headers.get(name)) is not None
    }


def _with_subject_faxes(
    headers: Message, faxes: Sequence[Fax], rule: SubjectRule
) -> tuple[list[Fax], str]:
    """`faxes` and those the subject names; the rest of the subject, for the cover page."""
    found = numbers_in_subject(str(headers.get("Subject") or ""), rule.numbers, rule.max_faxes)
    known = {fax.number.e164 for fax in faxes}
    # The shared address is the sender's own mail system's: no addressee to name.
    added = [
        Fax(number, recipient=rule.addresses[0], by_subject=True)
        for number in found.numbers
        if number.e164 not in known
    ]
    if len(faxes) + len(added) > rule.max_faxes:
        raise AddressRefused(
            f"the message asks for {len(faxes) + len(added)} faxes; at most"
            f" {rule.max_faxes} per message",
            "too_many",
        )
    return [*faxes, *added], found.rest


def _named(fax: Fax, from_message: str | None, cover_page: bool) -> Fax:
    """A contact's own cover name wins over the one the message gives its address."""
    if not cover_page or fax.by_subject:
        return replace(fax, cover_to=None)
    return replace(fax, cover_to=fax.cover_to or from_message)


def _has_cover(content: FaxContent) -> bool:
    return any((content.cover_to, content.cover_from, content.cover_message))


def _cover_to(raw: bytes, recipient: str, cover: CoverMode) -> str | None:
    return fax_content(raw, recipient=recipient, cover=cover).cover_to


def _header_block(raw: bytes) -> bytes:
    """The header lines alone: a header parser would still walk every line of the body."""
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return raw[: min(ends) + 2] if ends else raw


def _names_someone(headers: Message) -> bool:
    """Does To or Cc give any address a display name?"""
    try:
        return any(
            address.display_name
            for name in ("To", "Cc")
            for header in headers.get_all(name) or []
            for address in getattr(header, "addresses", ())
        )
    except Exception:  # a malformed header: read the message for each, to be sure
        return True


def reply_address(headers: Message, sender: str) -> str | None:
    """Where the reply goes: the one address in Reply-To, else the envelope sender."""
    try:
        reply_to = headers.get("Reply-To")
        addresses = list(getattr(reply_to, "addresses", ()))
    except Exception:  # a malformed header: fall back on the envelope
        addresses = []
    if len(addresses) == 1:
        address = str(addresses[0].addr_spec)
        if "@" in address and address.isprintable() and " " not in address:
            return address
    return sender or None
