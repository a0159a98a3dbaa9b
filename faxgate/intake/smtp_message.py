"""From a received message and its envelope to what the listener stores. Pure: no IO.

faxgate.domain.message reads the message (documents, cover page); this adds what the
envelope knows: who sent it, the line to send from, where the reply goes and whether one
may go at all (faxgate.domain.autoreply, RFC 3834), and the facts the reply will need
(intake_ref: the original Message-ID and Subject, the sender, the login).
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import replace
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

from faxgate.domain.autoreply import may_reply
from faxgate.domain.message import CoverMode, FaxContent, fax_content
from faxgate.intake.smtp_accept import Fax, MailToFax

_HEADER_PARSER = BytesHeaderParser(policy=email.policy.default)


def read_mail(
    raw: bytes,
    *,
    sender: str,
    login: str | None,
    faxes: Sequence[Fax],
    cover: CoverMode,
    from_line: str | None,
) -> MailToFax:
    """What to store for a message to `faxes` from `sender` ("" for the null sender).

    Raises faxgate.domain.message.MessageRefused when there is nothing faxgate can fax.
    """
    if not faxes:
        raise ValueError("a message to fax needs at least one fax recipient")
    first = fax_content(raw, recipient=faxes[0].recipient, cover=cover)
    headers = _HEADER_PARSER.parsebytes(_header_block(raw))
    named = [replace(faxes[0], cover_to=first.cover_to)]
    # The cover page's addressee is the name the message gives that very address: worth
    # reading the message again for each only when it names anyone.
    others_named = _has_cover(first) and _names_someone(headers)
    for fax in faxes[1:]:
        cover_to = _cover_to(raw, fax.recipient, cover) if others_named else None
        named.append(replace(fax, cover_to=cover_to))
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
    )


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
