"""What faxgate writes about an inbound fax: the mail, the file names, the metadata. Pure.

Everything here is derived from the fax's record alone, so that a delivery done twice
(after a crash) writes the same bytes under the same names.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final

from faxgate.domain.autoreply import AUTO_GENERATED
from faxgate.domain.inbound import InboundFax
from faxgate.domain.numbers import display_number, from_provider_digits
from faxgate.inbound.documents import kind_of

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9]+")
_MAX_NAME_PART: Final = 20
# HelloFax keeps the faxes it delivered to a callback (its getting-started page, note D).
_WHERE_ELSE: Final = (
    "HelloFax keeps received faxes: look for it in the documents screen of the account at"
    " https://app.hellofax.com."
)


# ---------------------------------------------------------------------------- numbers


def number_from_provider(text: str | None) -> str | None:
    """A number as the provider reported it, in E.164 when it reads as one; else as it
    came (without line breaks); None when there is none."""
    if text is None or not text.strip():
        return None
    number = from_provider_digits(text)
    return number.e164 if number is not None else " ".join(text.split())[:64]


def e164_or_none(number: str | None) -> str | None:
    """The number if it is E.164 (routing compares only those)."""
    return number if number is not None and re.fullmatch(r"\+[1-9]\d{1,14}", number) else None


def shown(number: str | None) -> str:
    return display_number(number) if number else "an unknown number"


# ---------------------------------------------------------------------------- folder


def file_stem(fax: InboundFax) -> str:
    """`YYYY-MM-DD_HHMMSS_from-<number>_<id>`: sorts by time, says who, never clashes."""
    when = fax.when.astimezone(UTC).strftime("%Y-%m-%d_%H%M%S")
    sender = _UNSAFE.sub("", fax.from_number or "")[:_MAX_NAME_PART] or "unknown"
    return f"{when}_from-{sender}_{fax.id}"


def document_file_name(fax: InboundFax) -> str | None:
    """The name the document takes in a folder and as an attachment."""
    if fax.document is None:
        return None
    return file_stem(fax) + kind_of(fax.document.content_type).suffix


def metadata(fax: InboundFax) -> dict[str, Any]:
    """The .json written beside the document: the fax's details for programs."""
    document = fax.document
    return {
        "id": fax.id,
        "provider_guid": fax.provider_guid,
        "from": fax.from_number,
        "to": fax.to_number,
        "pages": fax.pages,
        "received_at": _iso(fax.when),
        "route": fax.route,
        "document": None
        if document is None
        else {
            "file": document_file_name(fax),
            "content_type": document.content_type,
            "size": document.size,
            "sha256": document.sha256,
        },
        "note": fax.note,
    }


def metadata_bytes(fax: InboundFax) -> bytes:
    return (json.dumps(metadata(fax), indent=2, ensure_ascii=False) + "\n").encode()


# ---------------------------------------------------------------------------- mail


def subject(fax: InboundFax) -> str:
    pages = f" ({_count(fax.pages, 'page')})" if fax.pages else ""
    missing = ", document not included" if fax.document is None else ""
    return f"Fax from {shown(fax.from_number)}{pages}{missing}"


def body(fax: InboundFax) -> str:
    sender = shown(fax.from_number)
    line = shown(fax.to_number)
    pages = f" ({_count(fax.pages, 'page')})" if fax.pages else ""
    opening = f"A fax from {sender} came in on the line {line}{pages}."
    if fax.document is not None:
        opening += f" It is attached as {document_file_name(fax)}."
    parts = [opening]
    if fax.document is None:
        reason = fax.note or "the provider's callback included no document"
        parts.append(f"The document is not included: {reason}. {_WHERE_ELSE}")
    elif fax.note:
        parts.append(f"Note: {fax.note}.")
    parts = [_fill(text, keep=(sender, line)) for text in parts]
    rows = [
        ("From", sender),
        ("To line", line),
        ("Pages", str(fax.pages) if fax.pages else "not known"),
        ("Received", fax.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("Provider ID", fax.provider_guid),
        ("faxgate ID", fax.id),
        ("Route", fax.route),
    ]
    width = max(len(label) for label, _ in rows) + 3
    parts.append("\n".join(f"  {label + ':':<{width}}{value}" for label, value in rows))
    return "\n\n".join(parts) + "\n\n-- \nfaxgate\n"


def compose_mail(
    fax: InboundFax,
    recipients: Sequence[str],
    document: bytes | None,
    *,
    message_id: str | None = None,
) -> EmailMessage:
    """One mail to all the recipients, the document attached when there is one.

    A `message_id` made from the fax lets mail programs fold the copy a crash may send
    twice into one.
    """
    if not recipients:
        raise ValueError("a mail needs at least one recipient")
    message = EmailMessage()
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject(fax)
    message["Auto-Submitted"] = AUTO_GENERATED
    if message_id:
        message["Message-ID"] = message_id
    message["X-Faxgate-Inbound"] = fax.id
    message.set_content(body(fax))
    if fax.document is not None and document is not None:
        maintype, _, subtype = fax.document.content_type.partition("/")
        message.add_attachment(
            document, maintype=maintype, subtype=subtype, filename=document_file_name(fax)
        )
    return message


def message_id(fax: InboundFax, seq: int, domain: str) -> str:
    return f"<inbound.{fax.id}.{seq}@{domain}>"


def _fill(text: str, *, keep: Sequence[str]) -> str:
    """Wrap to 72 columns, never inside a number ("+1 415-555-0100")."""
    for number in keep:
        text = text.replace(number, number.replace(" ", "\N{NO-BREAK SPACE}"))
    wrapped = textwrap.fill(text, 72, break_on_hyphens=False, break_long_words=False)
    return wrapped.replace("\N{NO-BREAK SPACE}", " ")


def _count(n: int | None, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
