"""From an email (the raw bytes) to what is faxed: documents and cover page fields.

Pure rules, no IO; docs/email.md ("How a message is read") tells them in full. In short:

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

import contextlib
import email
import email.policy
import re
from dataclasses import dataclass, field
from email.errors import InvalidBase64LengthDefect
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses
from enum import StrEnum
from html.parser import HTMLParser
from pathlib import PurePath
from typing import Final

from faxgate.domain.documents import (
    ACCEPTED_TYPES,
    MAX_FILES,
    DocumentRefused,
    accepted_list,
    check_batch,
    check_document,
    check_readable,
)

__all__ = [
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

MAX_COVER_MESSAGE_CHARS: Final = 2000
BODY_DOCUMENT_NAME: Final = "message.txt"

# Below these, an image is a logo or a signature, not a page.
SIGNATURE_IMAGE_MAX_BYTES: Final = 10 * 1024
SIGNATURE_IMAGE_MIN_SIDE: Final = 64

_MAX_DEPTH: Final = 12  # nested multiparts and forwarded messages
_MAX_NAME_CHARS: Final = 120
_HEAD_BYTES: Final = 512
# Characters of a header read at most (a subject, a name); what is kept of it, the longest
# line a mail may carry (RFC 5322).
_LONGEST_HEADER: Final = 8 * 1024
_LONGEST_LINE: Final = 998

_COVER_OFF_VALUES: Final = frozenset({"no", "off", "false", "0", "none"})
_DIGITAL_SIGNATURES: Final = frozenset(
    {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-signature",
        "application/pgp-keys",
    }
)
# Certificates a mail program sends along (S/MIME "certs-only"): keys, like a signature.
_CERTIFICATES: Final = frozenset(
    {
        "application/pkix-cert",
        "application/x-x509-ca-cert",
        "application/x-x509-user-cert",
        "application/x-pkcs7-certificates",
    }
)
_CERTIFICATE_EXTENSIONS: Final = frozenset({".p7c", ".crt", ".cer"})
_CONTACT_CARDS: Final = frozenset(
    {"text/vcard", "text/x-vcard", "text/directory", "application/vcard", "application/x-vcard"}
    | {"application/vcard+json", "application/vcard+xml", "text/x-vcard-plain"}
)
_CONTACT_EXTENSIONS: Final = frozenset({".vcf", ".vcard"})
_CALENDARS: Final = frozenset(
    {"text/calendar", "text/x-vcalendar", "application/ics", "application/x-ics"}
    | {"application/calendar+json", "application/calendar+xml"}
)
_CALENDAR_EXTENSIONS: Final = frozenset({".ics", ".ical", ".ifb", ".vcs"})
_PKCS7_MIME: Final = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_ENCRYPTED: Final = frozenset({"multipart/encrypted", "application/pgp-encrypted"})
_TNEF: Final = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_FORWARDED: Final = frozenset({"message/rfc822", "message/global", "message/news"})
# Parts of a mail system's report: what it says about a message, never a page.
_REPORT_PARTS: Final = frozenset(
    {"message/delivery-status", "message/global-delivery-status"}
    | {"message/disposition-notification", "message/global-disposition-notification"}
    | {"message/feedback-report", "text/rfc822-headers", "message/rfc822-headers"}
    | {"message/global-headers"}
)
_REPORT_KINDS: Final[dict[str, str]] = {
    "delivery-status": "a delivery report (a bounce)",
    "global-delivery-status": "a delivery report (a bounce)",
    "disposition-notification": "a read receipt",
    "global-disposition-notification": "a read receipt",
    "feedback-report": "a spam or abuse report",
}
# Forms of a text faxgate reads as text, besides plain text.
_ENRICHED: Final = frozenset({"text/enriched", "text/richtext"})
_HTML: Final = frozenset({"text/html", "text/watch-html"})  # Apple's for its watch
_BODY_TYPES: Final = frozenset({"text/plain"}) | _HTML | _ENRICHED
# Exchange and MDaemon cut a body around an attachment and name the pieces after it
# ATT00001.htm, ATT00002.txt, att1.htm: the body, not files the sender attached.
_BODY_PIECE: Final = re.compile(r"att\d{1,8}\.(?:txt|html?)", re.IGNORECASE)
# What a part without a file name is, in the words a person uses.
_KINDS: Final[dict[str, str]] = {
    "text/calendar": "a meeting invitation",
    "application/postscript": "a PostScript file",
}
# Transfer encodings that are not misspellings: content packed another way than MIME's.
_FOREIGN_ENCODINGS: Final[dict[str, str]] = {
    "x-binhex": "BinHex",
    "binhex": "BinHex",
    "x-binhex40": "BinHex",
    "x-gzip64": "gzip",
    "x-gzip": "gzip",
    "gzip": "gzip",
    "x-compress": "compress",
}
_BROKEN_STRUCTURE: Final = (
    "the message's structure is broken: one of its parts should hold several pieces, but "
    "the line that divides them (the MIME boundary) {problem}; send it again, or from "
    "another mail program"
)

# Content type -> extension, for parts whose name lacks one.
_EXTENSIONS: Final[dict[str, str]] = {
    **{content_type: ext for ext, content_type in reversed(ACCEPTED_TYPES.items())},
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/tif": ".tif",
    "application/x-pdf": ".pdf",
    "text/rtf": ".rtf",
}
_REAL_EXTENSION: Final = re.compile(r"\.(?=[0-9]*[a-z])[a-z0-9]{1,5}", re.IGNORECASE)
_SNIFFED: Final = (".pdf", ".tif", ".png", ".jpg", ".gif")  # kinds with a known signature
_IMAGES: Final = frozenset({".png", ".jpg", ".gif"})

# Labels mail clients use for a wider codec than the one they name.
_CHARSET_ALIASES: Final[dict[str, str]] = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
}
_UNLABELLED_CHARSETS: Final = frozenset({"", "us-ascii", "ascii", "unknown-8bit", "x-unknown"})


class CoverMode(StrEnum):
    """When a fax gets the provider's cover page."""

    ALWAYS = "always"
    WHEN_BODY = "when_body"  # when the message has text to carry beside its attachments
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class MailDocument:
    name: str
    content: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class FaxContent:
    documents: list[MailDocument]
    cover_to: str | None
    cover_from: str | None
    cover_message: str | None
    subject: str | None
    message_id: str | None
    skipped: list[str]  # plain words, e.g. "inline image logo.png not faxed"
    cover_page: bool = False


class MessageRefused(ValueError):
    """A message that will not be faxed; `reason` is in plain words for the reply."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def _parse(raw: bytes) -> Message:
    try:
        return email.message_from_bytes(_mended(raw), policy=email.policy.default)
    except Exception as error:  # the parser's own bugs on hostile input, deep nesting
        raise MessageRefused("the message could not be read as an email") from error


_HEADER_LINE: Final = re.compile(rb"[!-9;-~]+[ \t]*:")
# An unquoted boundary parameter holding characters a token may not (RFC 2045), on a
# Content-Type line or its continuation.
_BARE_BOUNDARY: Final = re.compile(
    rb"^((?:content-type:|[ \t])[^\n]*?;\s*boundary[ \t]*=[ \t]*)"
    rb"([^\"\s;]*[=/?@:,()<>\[\]][^\"\s;]*)",
    re.IGNORECASE | re.MULTILINE,
)


def _mended(raw: bytes) -> bytes:
    """The message with two faults of real mail mended, as mail readers mend them.

    A byte order mark before the first header (a message saved by a Windows editor) would
    make every header body text. A boundary with "=" left unquoted (Outlook Express:
    boundary=----=_NextPart_000...) would be cut at the "=": it is quoted. A folded header
    line that lost its leading blank (seen from Exchange) would end the headers there, the
    MIME headers after it lost: a line without a colon between header lines is read as a
    continuation.
    """
    raw = _BARE_BOUNDARY.sub(rb'\1"\2"', raw.removeprefix(b"\xef\xbb\xbf"))
    end = _header_end(raw)
    lines = raw[:end].split(b"\n")
    mended = False
    for at in range(1, len(lines) - 1):
        line = lines[at]
        if not line.strip() or line[:1] in b" \t" or _HEADER_LINE.match(line):
            continue
        if not _HEADER_LINE.match(lines[at + 1]):
            break  # the body starts here, without its blank line: left as it is
        lines[at] = b" " + line
        mended = True
    return b"\n".join(lines) + raw[end:] if mended else raw


def _header_end(raw: bytes) -> int:
    ends = [at for at in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if at >= 0]
    return min(ends) if ends else len(raw)


# --- Walking the MIME tree -------------------------------------------------------------


@dataclass(slots=True)
class _Candidate:
    """An attachment before its name is settled and it is checked."""

    name: str | None
    declared_type: str
    content: bytes
    charset: str | None = None
    _problem: str | None = None
    _checked: bool = False

    def problem(self) -> str | None:
        """Why it cannot be faxed (checked once: a PDF is opened to check it), or None."""
        if not self._checked:
            try:
                _checked(self, number=1)
            except DocumentRefused as refusal:
                self._problem = str(refusal)
            self._checked = True
        return self._problem


@dataclass(slots=True)
class _Walk:
    """What a walk over a part and its children finds, in order of appearance."""

    candidates: list[_Candidate] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    plain_text: bool = False  # some text came from text/plain, not HTML
    skipped: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    forwarded_texts: list[str] = field(default_factory=list)  # the text of forwarded messages

    def walk(self, part: Message, depth: int) -> None:
        if depth > _MAX_DEPTH:
            self.refusals.append("the message is nested too deeply to be read")
            return
        content_type = _content_type(part)
        if content_type in _ENCRYPTED:
            self.refusals.append(_ENCRYPTED_REASON)
        elif content_type in _PKCS7_MIME:
            self._pkcs7(part)
        elif depth == 0 and (report := _report_kind(part, content_type)):
            self.refusals.append(
                f"the message is {report} from a mail system, not a document to fax"
            )
        elif content_type == "message/partial":
            self.refusals.append(
                "the message is one piece of a message your mail program split in several, "
                "which faxgate cannot put together; send it again in one piece"
            )
        elif content_type == "message/external-body":
            name = _filename(part) or "a file"
            self.refusals.append(
                f"{name} is not in the message: the mail program only pointed to where it "
                "is kept; attach the file itself"
            )
        elif content_type in _FORWARDED:
            self._forwarded(part, depth)
        elif content_type == "multipart/alternative":
            self._alternative(part, depth)
        elif content_type.startswith("multipart/"):
            self._children(part, depth)
        else:
            self._leaf(part, content_type)

    def absorb_files(self, other: _Walk) -> None:
        """Take the other walk's attachments and notes, not its text."""
        self.candidates += other.candidates
        self.skipped += other.skipped
        self.refusals += other.refusals
        self.forwarded_texts += other.forwarded_texts

    def _children(self, part: Message, depth: int) -> None:
        children = _children(part)
        if children is None:
            self.refusals.append(_broken(part))
            return
        for child in children:
            self.walk(child, depth + 1)

    def _alternative(self, part: Message, depth: int) -> None:
        """One content in several forms (RFC 2046): text from the plain form, files from the
        richest (the last with any), among the forms faxgate can fax; the others are left
        out with a note. Refused only when no form can be faxed."""
        children = _children(part)
        if children is None:
            self.refusals.append(_broken(part))
            return
        versions: list[tuple[Message, _Walk]] = []
        for child in children:
            version = _Walk()
            version.walk(child, depth + 1)
            versions.append((child, version))
        usable = [v for _, v in versions if v.faxable()]
        if not any(v.candidates or _has_text(v) for v in usable):
            usable = [v for _, v in versions]  # no form can be faxed: say why
        with_text = [v for v in usable if _has_text(v)]
        text = next((v for v in with_text if v.plain_text), with_text[-1] if with_text else None)
        files = next((v for v in reversed(usable) if v.candidates or v.refusals), None)
        files = files or next((v for v in reversed(usable) if v.skipped), None)
        if text is not None:
            self.texts += text.texts
            self.plain_text |= text.plain_text
        if files is not None:
            self.absorb_files(files)
        chosen = {id(v) for v in usable}
        for child, version in versions:
            if id(version) not in chosen and not _content_type(child).startswith("text/"):
                self.skipped.append(f"{_form(child)} not faxed; the same message as text was")

    def faxable(self) -> bool:
        """Nothing here is refused: every attachment passes its checks."""
        return not self.refusals and all(c.problem() is None for c in self.candidates)

    def _pkcs7(self, part: Message) -> None:
        """S/MIME's one type for three things: certificates, signed and encrypted mail."""
        smime_type = _param(part, "smime-type")
        extension = PurePath(_filename(part) or "").suffix.lower()
        if smime_type == "certs-only" or extension in _CERTIFICATE_EXTENSIONS:
            return  # the sender's certificate, sent along by the mail program
        if smime_type == "signed-data" or extension == ".p7s":
            self.refusals.append(
                "the message is signed in a form faxgate cannot open (S/MIME, opaque "
                "signing); send it with a clear signature, or unsigned"
            )
            return
        self.refusals.append(_ENCRYPTED_REASON)

    def _forwarded(self, part: Message, depth: int) -> None:
        inner = _Walk()
        for child in _children(part) or []:
            inner.walk(child, depth + 1)
        self.absorb_files(inner)
        self.forwarded_texts += inner.texts

    def _leaf(self, part: Message, content_type: str) -> None:
        name = _filename(part)
        disposition = _disposition(part)
        extension = PurePath(name or "").suffix.lower()
        if content_type in _DIGITAL_SIGNATURES | _CERTIFICATES | _REPORT_PARTS:
            return  # added by the mail program, not by the sender
        if extension in _CERTIFICATE_EXTENSIONS and content_type == "application/octet-stream":
            return
        if content_type in _CONTACT_CARDS or extension in _CONTACT_EXTENSIONS:
            self.skipped.append(f"contact card {name or 'without a name'} not faxed")
            return
        if content_type in _CALENDARS or extension in _CALENDAR_EXTENSIONS:
            self.skipped.append(
                f"meeting invitation {name} not faxed"
                if name
                else "the meeting invitation (calendar entry) not faxed"
            )
            return
        if content_type in _TNEF or (name or "").lower() == "winmail.dat":
            self.refusals.append(_TNEF_REASON.format(name=name or "winmail.dat"))
            return
        if _is_body(content_type, name, disposition):
            self._text(part, content_type)
            return
        label = name or f"a part of the message without a name ({_kind(content_type)})"
        try:
            content = _part_bytes(part)
        except _Undecodable as error:
            self.refusals.append(f"{label}: {error}")
            return
        if not content or content.isspace():
            self.skipped.append(f"empty attachment {name or 'without a name'} not faxed")
            return
        image = _image_to_skip(content, disposition, _header_text(part, "content-id"))
        if image:
            self.skipped.append(f"{image} {name or 'without a name'} not faxed")
            return
        self.candidates.append(_Candidate(name, content_type, content, _charset(part)))

    def _text(self, part: Message, content_type: str) -> None:
        try:
            data = _part_bytes(part)
        except _Undecodable:
            data = b""  # a body that cannot be read is no body, not a refusal
        text = _decode_text(data, _charset(part))
        if _PGP_MESSAGE.match(text):
            self.refusals.append(_ENCRYPTED_REASON)
            return
        if content_type in _HTML:
            text = html_to_text(text)
        elif content_type in _ENRICHED:
            text = enriched_to_text(text)
        else:
            self.plain_text = True
        self.texts.append(text)


_TNEF_REASON: Final = (
    "{name}: Outlook sent the attachments in its own format (TNEF, winmail.dat), which "
    "cannot be faxed; send the message as HTML or plain text, not Rich Text"
)
_ENCRYPTED_REASON: Final = (
    "the message is encrypted (S/MIME or PGP) and faxgate cannot read it; send it unencrypted"
)
_PGP_MESSAGE: Final = re.compile(r"\s*-----BEGIN PGP MESSAGE-----")


def _report_kind(message: Message, content_type: str) -> str | None:
    """What kind of report from a mail system the message is, or None: a multipart/report
    (RFC 6522) or a bare report part, or a bounce in plain text from a mailer daemon."""
    if content_type == "multipart/report":
        return _REPORT_KINDS.get(_param(message, "report-type"), "an automatic report")
    if content_type in _REPORT_PARTS:
        return _REPORT_KINDS.get(content_type.partition("/")[2], "an automatic report")
    senders = _mailboxes(message, "from")
    daemon = bool(senders) and senders[0][1].partition("@")[0].lower() == "mailer-daemon"
    if daemon or _raw_header(message, "x-failed-recipients") is not None:
        return _REPORT_KINDS["delivery-status"]
    return None


def _is_body(content_type: str, name: str | None, disposition: str | None) -> bool:
    """A piece of the message's own text, not a text file the sender attached."""
    if content_type not in _BODY_TYPES:
        return False
    if name and _BODY_PIECE.fullmatch(name):
        return True
    return not name and disposition != "attachment"


def _has_text(walk: _Walk) -> bool:
    return any(text.strip() for text in walk.texts)


def _broken(part: Message) -> str:
    """The reason for a multipart whose pieces cannot be found, the same for every kind."""
    boundary = _param(part, "boundary")
    problem = "is missing" if not boundary else "never appears"
    return _BROKEN_STRUCTURE.format(problem=problem)


def _form(part: Message) -> str:
    """A form of an alternative, in words: "the PostScript form of the message"."""
    content_type = _content_type(part)
    if content_type in _CALENDARS:
        return "the meeting invitation (calendar entry)"
    if content_type == "application/postscript":
        return "the PostScript form of the message"
    return "another form of the message"


def _kind(content_type: str) -> str:
    """What a part is, for a person: "a meeting invitation", "a file of an unknown kind"."""
    if content_type in _KINDS:
        return _KINDS[content_type]
    extension = _EXTENSIONS.get(content_type)
    if extension:
        return f"a {extension[1:].upper()} file"
    if content_type.startswith("image/"):
        return "a picture"
    if content_type.startswith("text/"):
        return "a text"
    if content_type.startswith(("audio/", "video/")):
        return "a sound or video"
    return "a file of an unknown kind"


def _param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name, header="content-type")
    except Exception:
        return ""
    return str(value).strip().lower() if isinstance(value, str) else ""


def _children(part: Message) -> list[Message] | None:
    try:
        payload = part.get_payload()
    except Exception:
        return None
    if not isinstance(payload, list):
        # A multipart with nothing in it is empty, not broken: nothing is lost.
        return [] if isinstance(payload, str) and not payload.strip() else None
    return [child for child in payload if isinstance(child, Message)]


# --- Reading one part ------------------------------------------------------------------


class _Undecodable(Exception):
    """A part whose content cannot be recovered; the message says why."""


def _part_bytes(part: Message) -> bytes:
    """The part's content; an unknown transfer encoding ("8bits", "plain") read as 8bit,
    as mail readers do."""
    encoding = (_header_text(part, "content-transfer-encoding") or "").lower()
    if encoding in _FOREIGN_ENCODINGS:
        raise _Undecodable(
            f"it is packed as {_FOREIGN_ENCODINGS[encoding]}, which faxgate cannot unpack; "
            "attach the file again as it is"
        )
    defects_before = len(part.defects)
    try:
        content = part.get_payload(decode=True)
    except Exception as error:
        raise _Undecodable("it could not be decoded") from error
    if not isinstance(content, bytes):
        raise _Undecodable("it could not be decoded")
    if any(isinstance(d, InvalidBase64LengthDefect) for d in part.defects[defects_before:]):
        raise _Undecodable("its base64 encoding is damaged and it could not be decoded")
    return content


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _filename(part: Message) -> str | None:
    """The part's file name (RFC 2231 and RFC 2047 decoded), cleaned; None when it has none."""
    try:
        name = part.get_filename()  # falls back to Content-Type's name
    except Exception:
        name = None
    if not isinstance(name, str):
        name = _encoded_name(part)
    if name is None:
        return None
    return _clean_name(name) or None


_ENCODED_NAME: Final = re.compile(r"""(?:file)?name\s*=\s*"?(=\?[^"]*?\?=)""", re.IGNORECASE)


def _encoded_name(part: Message) -> str | None:
    """An RFC 2047 name the parser gave up on (Gmail once wrote name==?utf-8?B?...?=)."""
    for header in ("content-disposition", "content-type"):
        found = _ENCODED_NAME.search(_raw_header(part, header) or "")
        if found:
            return _decoded(found[1])
    return None


def _clean_name(name: str) -> str:
    """The last path component, printable, without surrounding blanks or trailing dots."""
    name = _readable(name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch if ch.isprintable() else " " for ch in name).replace("\ufffd", "_")
    name = " ".join(name.split()).rstrip(". ")
    if len(name) > _MAX_NAME_CHARS:
        suffix = PurePath(name).suffix[:8]
        name = name[: _MAX_NAME_CHARS - len(suffix)] + suffix
    return name


def _charset(part: Message) -> str | None:
    try:
        charset = part.get_content_charset()
    except Exception:
        return None
    return charset if isinstance(charset, str) else None


def _decode_text(data: bytes, charset: str | None) -> str:
    """Text in whatever charset it claims, never failing: unlabelled 8-bit is UTF-8 or 1252."""
    label = (charset or "").strip().lower()
    if label in _UNLABELLED_CHARSETS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252", errors="replace")
    try:
        return data.decode(_CHARSET_ALIASES.get(label, label), errors="replace")
    except (LookupError, ValueError):  # an unknown label, or a codec that is not for text
        return _decode_text(data, None)


_UTF8_BOM: Final = b"\xef\xbb\xbf"
_UTF16_BOMS: Final = (b"\xff\xfe", b"\xfe\xff")
_META_CHARSET: Final = re.compile(
    rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([a-z0-9_.:-]+)[^>]*>", re.IGNORECASE
)
_HEAD_START: Final = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
_HTML_START: Final = re.compile(rb"<html(?:\s[^>]*)?>", re.IGNORECASE)


def as_utf8(content: bytes, charset: str | None, *, html: bool) -> bytes:
    """A text or HTML file in UTF-8, saying so, for a provider that reads UTF-8 only.

    The charset is the part's label, else (HTML) the page's own <meta>, else a UTF-16 byte
    order mark, else UTF-8 when the bytes are, else Windows-1252. UTF-8 content is passed
    on unchanged; other content is converted, and declared: a byte order mark before
    text, a <meta charset> in HTML (replacing any other).
    """
    label = (charset or "").strip().lower()
    if html and label in _UNLABELLED_CHARSETS:
        declared = _META_CHARSET.search(content[:4096])
        label = declared[1].decode("ascii").lower() if declared else label
    if content.startswith(_UTF16_BOMS) or label.startswith(("utf-16", "ucs-2", "utf-32")):
        codec = "utf-16" if label.startswith("ucs-2") or not label else label
        try:
            text = content.decode(codec, errors="replace")
        except LookupError:
            text = content.decode("utf-16", errors="replace")
    elif label in ("utf-8", "utf8") or label in _UNLABELLED_CHARSETS:
        try:
            content.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode_text(content, "windows-1252")
        else:
            return content
    else:
        text = _decode_text(content, label)
    if not html:
        return _UTF8_BOM + text.lstrip("\ufeff").encode()
    page = _META_CHARSET.sub(b"", text.lstrip("\ufeff").encode())
    meta = b'<meta charset="utf-8">'
    start = _HEAD_START.search(page) or _HTML_START.search(page)
    at = start.end() if start else 0
    return page[:at] + meta + page[at:]


def enriched_to_text(enriched: str) -> str:
    """text/enriched and text/richtext (RFC 1896) as the reader sees them: the formatting
    commands left out, "<<" a "<", one line break a space and n of them n - 1."""
    text = re.sub(r"<param>.*?</param>", "", enriched, flags=re.IGNORECASE | re.DOTALL)
    # richtext (RFC 1341) writes a line break as <nl> and "<" as <lt>
    text = re.sub(r"<nl>", "\n\n", text, flags=re.IGNORECASE)
    text = re.sub(r"<lt>", "<<", text, flags=re.IGNORECASE)
    text = re.sub(r"<<|<[^<>]*>", lambda token: "<" if token[0] == "<<" else "", text)
    return re.sub(r"\n+", lambda run: " " if len(run[0]) == 1 else run[0][1:], text)


def _image_to_skip(content: bytes, disposition: str | None, content_id: str | None) -> str | None:
    """ "inline image" or "small image" for a logo or signature image; None for a page."""
    if _sniffed_extension(content) not in _IMAGES:
        return None  # TIFFs are fax pages, however small
    if content_id and disposition != "attachment":
        return "inline image"
    size = image_size(content)
    small_side = size is not None and min(size) < SIGNATURE_IMAGE_MIN_SIDE
    if len(content) < SIGNATURE_IMAGE_MAX_BYTES or small_side:
        return "small image"
    return None


def _sniffed_extension(content: bytes) -> str | None:
    """The kind the content's first bytes show, by the same signatures check_document uses."""
    for extension in _SNIFFED:
        try:
            check_document(f"x{extension}", len(content), content[:_HEAD_BYTES])
        except DocumentRefused:
            continue
        return extension
    return None


def image_size(content: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF or JPEG read from its header, or None."""
    if content.startswith(b"\x89PNG\r\n\x1a\n") and content[12:16] == b"IHDR":
        return int.from_bytes(content[16:20], "big"), int.from_bytes(content[20:24], "big")
    if content.startswith((b"GIF87a", b"GIF89a")) and len(content) >= 10:
        return int.from_bytes(content[6:8], "little"), int.from_bytes(content[8:10], "little")
    if content.startswith(b"\xff\xd8"):
        return _jpeg_size(content)
    return None


_JPEG_FRAME_MARKERS: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(content: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's segments to its frame header (SOFn), which holds the size."""
    at = 2
    while at + 9 <= len(content):
        if content[at] != 0xFF:
            return None
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker in _JPEG_FRAME_MARKERS:
            height = int.from_bytes(content[at + 5 : at + 7], "big")
            width = int.from_bytes(content[at + 7 : at + 9], "big")
            return width, height
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        else:
            length = int.from_bytes(content[at + 2 : at + 4], "big")
            if length < 2:
                return None
            at += 2 + length
    return None


# --- Documents -------------------------------------------------------------------------


def _documents(found: _Walk) -> list[MailDocument]:
    """The checked documents, named uniquely; MessageRefused listing every refusal."""
    refusals = list(found.refusals)
    if len(found.candidates) > MAX_FILES:  # before opening any of them
        _check_limits([MailDocument("", c.content, "") for c in found.candidates])
    documents: list[MailDocument] = []
    taken: set[str] = set()
    for number, candidate in enumerate(found.candidates, start=1):
        try:
            document = _checked(candidate, number)
        except DocumentRefused as refusal:
            refusals.append(str(refusal))
            continue
        name = _unique(document.name, taken)
        documents.append(MailDocument(name, document.content, document.content_type))
    if refusals:
        raise MessageRefused("\n".join(dict.fromkeys(refusals)))
    return documents


def _checked(candidate: _Candidate, number: int) -> MailDocument:
    """The attachment as faxgate hands it on, or DocumentRefused with the reason."""
    name = _document_name(candidate, number)
    if name is None:
        kind = _kind(candidate.declared_type)
        raise DocumentRefused(
            f"a part of the message without a name ({kind}) cannot be faxed; "
            f"accepted are {accepted_list()}"
        )
    check = check_document(name, len(candidate.content), candidate.content[:_HEAD_BYTES])
    if candidate._checked:
        if candidate._problem is not None:
            raise DocumentRefused(candidate._problem)
    else:
        check_readable(name, check.content_type, candidate.content)
    content = candidate.content
    if check.content_type in ("text/plain", "text/html"):
        content = as_utf8(content, candidate.charset, html=check.content_type == "text/html")
    return MailDocument(check.name, content, check.content_type)


def _document_name(candidate: _Candidate, number: int) -> str | None:
    """The name to check: the given one, with an extension from the type when it has none."""
    name = candidate.name or f"attachment-{number}"
    if _REAL_EXTENSION.fullmatch(PurePath(name).suffix):
        return name
    extension = _EXTENSIONS.get(candidate.declared_type) or _sniffed_extension(candidate.content)
    if extension is None:
        return candidate.name  # checked as it is, refused with the name in the reason
    return name + extension


def _unique(name: str, taken: set[str]) -> str:
    path = PurePath(name)
    unique, copy = name, 1
    while unique.lower() in taken:
        copy += 1
        unique = f"{path.stem} ({copy}){path.suffix}"
    taken.add(unique.lower())
    return unique


def _body_document(body: str, skipped: list[str]) -> MailDocument:
    if not body:
        raise MessageRefused(_nothing_to_fax(skipped))
    content = (body + "\n").encode()
    check = check_document(BODY_DOCUMENT_NAME, len(content), content[:_HEAD_BYTES])
    return MailDocument(check.name, content, check.content_type)


def _nothing_to_fax(skipped: list[str]) -> str:
    """The reason, and on lines of their own what the message held that is not faxed."""
    reason = "there is nothing to fax: the message has no attachment and no text"
    return "\n".join([reason, *skipped])


def _check_limits(documents: list[MailDocument]) -> None:
    try:
        check_batch([len(document.content) for document in documents])
    except DocumentRefused as refusal:
        raise MessageRefused(str(refusal)) from refusal


# --- Text ------------------------------------------------------------------------------


def _body(texts: list[str]) -> str:
    """The message's text: pieces joined, the signature cut, whitespace tidied."""
    return tidy_text(cut_signature("\n\n".join(texts)))


def cut_signature(text: str) -> str:
    """Everything before the first signature separator line ("-- ", or "--" when stripped)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        if line.strip() == "--":
            return "\n".join(lines[:index])
    return "\n".join(lines)


def tidy_text(text: str) -> str:
    """One space between words, no control characters, at most one blank line in a row."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tidied: list[str] = []
    for line in lines:
        printable = "".join(ch if ch.isprintable() else " " for ch in line.replace("\u200b", ""))
        words = " ".join(printable.split())
        if words or (tidied and tidied[-1]):
            tidied.append(words)
    return "\n".join(tidied).strip()


def html_to_text(html: str) -> str:
    """The text a reader sees: blocks on their own lines, scripts and styles left out."""
    parser = _HtmlText()
    # html.parser gives up on some malformed markup; what it read so far is kept.
    with contextlib.suppress(Exception):
        parser.feed(html)
        parser.close()
    return parser.text()


class _HtmlText(HTMLParser):
    """Text from HTML the way mail clients lay it out: a block starts a line, <br> breaks one.

    Blocks do not add blank lines of their own (Outlook writes every line as a <p> and its
    blank lines as <p>&nbsp;</p>; Gmail writes <div><br></div>).
    """

    _BLOCKS: Final = frozenset(
        {"p", "div", "tr", "table", "ul", "ol", "blockquote", "pre", "hr", "dd", "dt"}
        | {"h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header", "footer"}
    )
    _HIDDEN: Final = frozenset({"script", "style", "head", "title", "template"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._pieces: list[str] = []
        self._hidden = 0
        self._line_started = False  # the current line has visible text

    def text(self) -> str:
        return "".join(self._pieces)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._hidden = 0  # a <head> never closed must not hide the body
        elif tag in self._HIDDEN:
            self._hidden += 1
        elif tag == "br":
            self._new_line(always=True)
        elif tag in self._BLOCKS:
            self._new_line()
        elif tag == "li":
            self._new_line()
            self._add("- ")
        elif tag in ("td", "th"):
            self._add(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS or tag == "li":
            self._new_line()

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._add(re.sub(r"[ \t\r\n\f]+", " ", data))

    def _add(self, text: str) -> None:
        self._pieces.append(text)
        self._line_started |= bool(text.strip(" \t\r\n\f"))

    def _new_line(self, *, always: bool = False) -> None:
        if always or self._line_started:
            self._pieces.append("\n")
            self._line_started = False


def _cover_message(subject: str | None, body: str) -> str | None:
    text = "\n\n".join(piece for piece in (subject, body) if piece)
    return _capped(text, MAX_COVER_MESSAGE_CHARS) or None


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.8:  # end on a whole word unless that loses much
        cut = cut[:space]
    return cut.rstrip() + "…"


# --- Cover page ------------------------------------------------------------------------


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


# --- Headers, read without ever raising ------------------------------------------------


def _header_text(message: Message, name: str) -> str | None:
    """The header's decoded value, whitespace collapsed, at most a line long (what a reply
    can carry); None when absent or blank."""
    raw = _raw_header(message, name)
    if raw is None:
        return None
    value: object
    if len(raw) > _LONGEST_HEADER:
        # The email package's header parser takes time quadratic in a header's words:
        # a huge one is cut first, and decoded the simple way.
        value = _decoded(raw[:_LONGEST_HEADER])
    else:
        try:
            value = message.get(name)
        except Exception:  # the header parser fails on some malformed values
            value = _decoded(raw)
    text = " ".join(_readable(str(value)).split())
    return text[:_LONGEST_LINE] or None


def _raw_header(message: Message, name: str) -> str | None:
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _decoded(raw: str) -> str:
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


def _mailboxes(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, address) of every mailbox in the header(s) `name`."""
    try:
        headers = message.get_all(name) or []
        return [
            (_readable(str(address.display_name)), str(address.addr_spec))
            for header in headers
            for address in getattr(header, "addresses", ())
        ]
    except Exception:
        raw = _raw_header(message, name)
        try:
            return [(_readable(n), a) for n, a in getaddresses([raw])] if raw else []
        except Exception:
            return []


def _readable(text: str) -> str:
    """Header text as meant: undecodable bytes as U+FFFD, Windows-1252 labelled Latin-1 fixed.

    The parser keeps undecodable bytes as surrogates; and Outlook labels Windows-1252 as
    ISO-8859-1, whose 0x80-0x9F are control characters nobody writes on purpose.
    """
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _C1_CONTROLS.sub(_as_cp1252, text)


_C1_CONTROLS: Final = re.compile("[\x80-\x9f]")


def _as_cp1252(match: re.Match[str]) -> str:
    return match[0].encode("latin-1").decode("cp1252", "replace")
