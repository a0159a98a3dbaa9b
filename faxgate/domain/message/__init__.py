"""From an email (the raw bytes) to what is faxed: documents and cover page fields.

Pure rules, no IO, in this package by what each reads (parsing and mending, the walk and
its documents, one part, the text, the cover page, the headers); docs/email.md ("How a
message is read") tells them in full. In short:

- Documents. Every attachment, in the order it appears (those of forwarded messages
  included), becomes one of the fax's documents when documents.check_document and
  documents.check_readable accept it. Any other attachment (zip, exe, winmail.dat, a PDF
  cut short, ...) refuses the whole message, with the reason in the sender's words,
  rather than faxing part of what was meant. Text and HTML attachments are handed on in
  UTF-8 (as_utf8).
- Not faxed, noted in `skipped`: logos and signature images (a PNG, JPEG or GIF shown
  inline with a Content-ID, or under 10 KB, or under 64 pixels on a side), empty
  attachments, contact cards, meeting invitations, forms of an alternative that cannot be
  faxed. Dropped silently: digital signatures, certificates, report parts.
- A multipart/alternative faxes the best form faxgate can fax; it is refused only when
  no form can be. A multipart whose boundary is missing or never appears is refused.
- The body is the message's own text: text/plain preferred to HTML, HTML and enriched
  text turned to text, Exchange's ATT00001.htm pieces included, cut at the "-- "
  signature line, whitespace tidied. A forwarded message's text is the body only when
  the message holds nothing else.
- Bounces, read receipts, spam reports, split and external-body messages, encrypted and
  opaque-signed mail are refused saying what they are.
- Cover page: with mode ALWAYS, or WHEN_BODY when there is a body to put on it beside
  attachments; never with NEVER or a header `X-Fax-Cover: no`. cover_to is the display
  name the message gives the fax address (To or Cc), cover_from the sender's display name
  (else address), cover_message the subject and, beside attachments, the body (capped).
- A message with a body and no attachment faxes the body as message.txt (UTF-8); the body
  is never faxed twice. Nothing to fax, or more than one fax takes
  (documents.check_batch), is a refusal; its reasons come one a line.

Nothing here raises anything but MessageRefused: malformed mail is everyday input.
"""

from __future__ import annotations

from faxgate.domain.message.cover import _cover_wanted, _recipient_name, _sender_name
from faxgate.domain.message.headers import _header_text
from faxgate.domain.message.parsing import POLICY as MAIL_POLICY
from faxgate.domain.message.parsing import _parse
from faxgate.domain.message.parts import as_utf8, enriched_to_text, image_size
from faxgate.domain.message.text import (
    _body,
    _cover_message,
    cut_signature,
    html_to_text,
    tidy_text,
)
from faxgate.domain.message.values import (
    MAX_COVER_MESSAGE_CHARS,
    CoverMode,
    FaxContent,
    MailDocument,
    MessageRefused,
)
from faxgate.domain.message.walk import _body_document, _check_limits, _documents, _Walk

__all__ = [
    "MAIL_POLICY",
    "MAX_COVER_MESSAGE_CHARS",
    "CoverMode",
    "FaxContent",
    "MailDocument",
    "MessageRefused",
    "as_utf8",
    "cut_signature",
    "enriched_to_text",
    "fax_content",
    "html_to_text",
    "image_size",
    "tidy_text",
]


def fax_content(
    raw: bytes,
    *,
    recipient: str,
    cover: CoverMode = CoverMode.WHEN_BODY,
    cover_subject: str | None = None,
) -> FaxContent:
    """What to fax for one message to `recipient` (the fax address); or MessageRefused.

    `cover_subject` stands for the subject on the cover page (what is left of a subject
    that named the fax numbers)."""
    cover = CoverMode(cover)  # also takes the setting's plain string
    message = _parse(raw)
    found = _Walk()
    found.walk(message, depth=0)
    documents = _documents(found)
    body = _body(found.texts)
    if not documents and not body:
        # A message that only forwards another (an .eml attached) means to fax that one.
        body = _body(found.forwarded_texts)
    skipped = list(found.skipped)
    carries_body = bool(body) and bool(documents)
    cover_on = _cover_wanted(cover, message, carries_body=carries_body)
    if not documents:
        documents = [_body_document(body, skipped)]
    elif body and not cover_on:
        skipped.append("the message text was not faxed (no cover page)")
    _check_limits(documents)
    subject = _header_text(message, "subject")
    return FaxContent(
        documents=documents,
        cover_to=_recipient_name(message, recipient) if cover_on else None,
        cover_from=_sender_name(message) if cover_on else None,
        cover_message=(
            _cover_message(
                subject if cover_subject is None else cover_subject,
                body if carries_body else "",
            )
            if cover_on
            else None
        ),
        subject=subject,
        message_id=_header_text(message, "message-id"),
        skipped=skipped,
        cover_page=cover_on,
    )
