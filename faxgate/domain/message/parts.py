"""Reading one part: its bytes, type, name and charset, images sized and sniffed."""

from __future__ import annotations

import re
from email.errors import InvalidBase64LengthDefect
from email.message import Message
from pathlib import PurePath
from typing import Final

from faxgate.domain.documents import (
    DocumentRefused,
    check_document,
)
from faxgate.domain.message.headers import _decoded, _header_text, _raw_header, _readable
from faxgate.domain.message.values import (
    _CHARSET_ALIASES,
    _FOREIGN_ENCODINGS,
    _HEAD_BYTES,
    _IMAGES,
    _MAX_NAME_CHARS,
    _SNIFFED,
    _UNLABELLED_CHARSETS,
    SIGNATURE_IMAGE_MAX_BYTES,
    SIGNATURE_IMAGE_MIN_SIDE,
)


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
