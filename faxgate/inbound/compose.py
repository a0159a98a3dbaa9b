"""What faxgate writes about an inbound fax: the mail, the file names, the metadata. Pure.

Everything here is derived from the fax's record alone, so that a delivery done twice
(after a crash) writes the same bytes under the same names.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final
from zoneinfo import ZoneInfo

from faxgate.domain.addressing import AddressBook
from faxgate.domain.autoreply import AUTO_GENERATED
from faxgate.domain.inbound import InboundFax
from faxgate.domain.numbers import display_number, from_provider_digits
from faxgate.domain.sending_rules import destination_zone
from faxgate.inbound.documents import kind_of

_UNSAFE: Final = re.compile(r"[^A-Za-z0-9]+")
_MAX_NAME_PART: Final = 20
_MAX_SENDER_NAME: Final = 60
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

# The reduced page 1 in the mail's body, in pixels: readable headings, a small file.
PAGE_IMAGE_PIXELS: Final = (560, 725)


@dataclass(frozen=True, slots=True)
class PageImage:
    """Page 1 reduced (a PNG), or the note that stands in its place."""

    png: bytes | None
    note: str | None = None


def names_by_number(book: AddressBook) -> dict[str, str]:
    """The senders' names the contacts give, by E.164 number: a contact's cover name, else
    its name in the book; the first contact of a number wins. On one line (it goes into the
    Subject header) and at most 60 characters."""
    names: dict[str, str] = {}
    for key, contact in book.contacts.items():
        name = " ".join((contact.cover_to or key).split())[:_MAX_SENDER_NAME]
        names.setdefault(contact.number.e164, name)
    return names


def sender(fax: InboundFax, name: str | None = None) -> str:
    """Who sent it: "Dr Ruth Mayer (+1 212-555-0199)" when the contacts name the number."""
    number = shown(fax.from_number)
    return f"{name} ({number})" if name and fax.from_number else number


def line_zone(fax: InboundFax) -> ZoneInfo:
    """The time zone of the line the fax came in on: where its recipients are. UTC when
    the number does not place it in one zone."""
    return destination_zone(fax.to_number)


def local_time(fax: InboundFax) -> str:
    """When it came in, as the recipients read a clock: "Wed 1 May 2024, 03:15 PDT"."""
    when = fax.when.astimezone(line_zone(fax))
    return f"{when:%a} {when.day} {when:%b %Y, %H:%M %Z}"


def subject(fax: InboundFax, name: str | None = None) -> str:
    pages = f" ({_count(fax.pages, 'page')})" if fax.pages else ""
    missing = ", document not included" if fax.document is None else ""
    who = (
        f"{name}, {shown(fax.from_number)}" if name and fax.from_number else shown(fax.from_number)
    )
    return f"Fax from {who}{pages}{missing}"


def _paragraphs(fax: InboundFax, name: str | None, page: PageImage | None) -> list[str]:
    """The body's sentences, unwrapped: the plain text and the HTML say the same."""
    pages = f" ({_count(fax.pages, 'page')})" if fax.pages else ""
    opening = (
        f"A fax from {sender(fax, name)} came in on the line {shown(fax.to_number)}"
        f" on {local_time(fax)}{pages}."
    )
    if fax.document is not None:
        opening += f" It is attached as {document_file_name(fax)}."
    parts = [opening]
    if fax.document is None:
        reason = fax.note or "the provider's callback included no document"
        parts.append(f"The document is not included: {reason}. {_WHERE_ELSE}")
    elif fax.note:
        parts.append(f"Note: {fax.note}.")
    if page is not None and page.note:
        parts.append(page.note)
    return parts


def _rows(fax: InboundFax, name: str | None) -> list[tuple[str, str]]:
    utc = fax.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    received = utc if line_zone(fax).key == "UTC" else f"{local_time(fax)} ({utc})"
    rows = [("From", shown(fax.from_number))]
    if name and fax.from_number:
        rows.append(("Name", name))
    rows += [
        ("To line", shown(fax.to_number)),
        ("Pages", str(fax.pages) if fax.pages else "not known"),
        ("Received", received),
        ("Provider ID", fax.provider_guid),
        ("faxgate ID", fax.id),
        ("Route", fax.route),
    ]
    return rows


def body(fax: InboundFax, name: str | None = None, page: PageImage | None = None) -> str:
    """The plain text: the whole story for text-only readers."""
    keep = (shown(fax.from_number), shown(fax.to_number), local_time(fax))
    parts = [_fill(text, keep=keep) for text in _paragraphs(fax, name, page)]
    rows = _rows(fax, name)
    width = max(len(label) for label, _ in rows) + 3
    parts.append("\n".join(f"  {label + ':':<{width}}{value}" for label, value in rows))
    return "\n\n".join(parts) + "\n\n-- \nfaxgate\n"


def html_body(fax: InboundFax, name: str | None, page: PageImage, image_cid: str | None) -> str:
    """The HTML alternative: the same words, page 1 shown under them."""
    text = "".join(f"<p>{html.escape(p)}</p>\n" for p in _paragraphs(fax, name, page))
    cells = "".join(
        f'<tr><th align="left" style="padding-right:1em">{html.escape(label)}</th>'
        f"<td>{html.escape(value)}</td></tr>\n"
        for label, value in _rows(fax, name)
    )
    image = ""
    if image_cid is not None:
        width = PAGE_IMAGE_PIXELS[0]
        image = (
            f'<p><img src="cid:{html.escape(image_cid)}" alt="Page 1 of the fax, reduced"'
            f' width="{width}" style="max-width:100%;height:auto;border:1px solid #999"></p>\n'
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif">\n'
        f"{text}{image}<table>\n{cells}</table>\n<p>-- <br>faxgate</p>\n</body></html>\n"
    )


def compose_mail(
    fax: InboundFax,
    recipients: Sequence[str],
    document: bytes | None,
    *,
    message_id: str | None = None,
    name: str | None = None,
    page: PageImage | None = None,
) -> EmailMessage:
    """One mail to all the recipients, the document attached when there is one.

    With `page`, an HTML alternative shows page 1 reduced (an inline `cid:` part), or the
    note saying why it cannot; the plain text says the same but the picture. `name` is
    the sender's, from the contacts, when known. A `message_id` made from the fax lets
    mail programs fold the copy a crash may send twice into one.
    """
    if not recipients:
        raise ValueError("a mail needs at least one recipient")
    message = EmailMessage()
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject(fax, name)
    message["Auto-Submitted"] = AUTO_GENERATED
    if message_id:
        message["Message-ID"] = message_id
    message["X-Faxgate-Inbound"] = fax.id
    message.set_content(body(fax, name, page))
    if page is not None:
        # Made from the fax, like the Message-ID: a mail sent again is the same mail.
        image_cid = f"page1.{fax.id}@faxgate.invalid" if page.png is not None else None
        message.add_alternative(html_body(fax, name, page, image_cid), subtype="html")
        if page.png is not None:
            html_part = message.get_body(("html",))
            assert html_part is not None  # added just above
            html_part.add_related(
                page.png,
                maintype="image",
                subtype="png",
                cid=f"<{image_cid}>",
                filename="page-1.png",
                disposition="inline",
            )
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
