"""What reading a message gives and refuses, and the limits and kinds it reads by."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from faxgate.domain.documents import (
    ACCEPTED_TYPES,
)

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
