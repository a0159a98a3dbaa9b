"""What the provider would make of an uploaded file: is it a document, how many pages.

The type comes from the file name's extension when it has a known one (and the content
must then be of that type), otherwise from the content. PDF pages are counted with pypdf,
TIFF pages by walking the image directory chain, text at 60 lines a page; images are one
page each; DOCX and ODT report their own page count when they carry one; other office
files and HTML/RTF count as one page. Anything else is not a readable document.
"""

from __future__ import annotations

import io
import math
import re
import struct
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.errors import PyPdfError
from pypdf.generic import ContentStream, DictionaryObject, NameObject

from faxgate.sandbox.records import CoverPage

LINES_PER_TEXT_PAGE = 60
LETTER = (612.0, 792.0)  # points

_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".gif": "gif",
    ".txt": "txt",
    ".text": "txt",
    ".htm": "html",
    ".html": "html",
    ".rtf": "rtf",
    ".doc": "doc",
    ".xls": "xls",
    ".docx": "docx",
    ".xlsx": "xlsx",
    ".odt": "odt",
}
_OLE2_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


@dataclass(frozen=True)
class DocumentInfo:
    readable: bool
    pages: int  # 0 when not readable
    kind: str | None
    reason: str  # why it is not readable, or how the pages were counted


class _Unreadable(Exception):
    pass


def examine(name: str, content: bytes) -> DocumentInfo:
    """Decide whether `content` (uploaded as `name`) is a document, and count its pages."""
    if not content:
        return DocumentInfo(False, 0, None, f"{name} is empty")
    extension = PurePath(name).suffix.lower()
    if extension:
        kind = _EXTENSIONS.get(extension)
        if kind is None:
            return DocumentInfo(False, 0, None, f"{extension} files are not supported")
    else:
        kind = _sniff(content)
        if kind is None:
            return DocumentInfo(False, 0, None, f"{name} is of no known document type")
    try:
        pages = _PAGE_COUNTERS[kind](content)
    except _Unreadable as problem:
        return DocumentInfo(False, 0, kind, f"{name}: {problem}")
    except Exception as problem:  # whatever a parser trips over, the provider could not convert
        return DocumentInfo(
            False, 0, kind, f"{name}: not a readable {kind} ({type(problem).__name__})"
        )
    if pages < 1:
        return DocumentInfo(False, 0, kind, f"{name} has no pages")
    return DocumentInfo(True, pages, kind, f"{kind}, {pages} page(s)")


# The first bytes of each kind of document, in the order they are tried.
_MAGIC: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    ("pdf", (b"%PDF-",)),
    ("tiff", (b"II*\x00", b"MM\x00*")),
    ("png", (b"\x89PNG\r\n\x1a\n",)),
    ("jpeg", (b"\xff\xd8\xff",)),
    ("gif", (b"GIF87a", b"GIF89a")),
    ("rtf", (b"{\\rtf",)),
    ("doc", (_OLE2_MAGIC,)),
)


def _sniff(content: bytes) -> str | None:
    head = content[:16]
    for kind, magic in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(content)
    text = _as_text(content)
    if text is None:
        return None
    if re.match(r"\s*<(!doctype\s+html|html)", text[:200], re.IGNORECASE):
        return "html"
    return "txt"


def _sniff_zip(content: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        return None
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "content.xml" in names:
        return "odt"
    return None


def _as_text(content: bytes) -> str | None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(char) < 32 and char not in "\t\n\r\f" for char in text[:65536]):
        return None
    return text


def _pdf_pages(content: bytes) -> int:
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("the PDF is encrypted")
        return len(reader.pages)
    except PyPdfError as problem:
        raise _Unreadable(f"not a readable PDF ({type(problem).__name__})") from None


def _tiff_pages(content: bytes) -> int:
    if content[:4] == b"II*\x00":
        order = "<"
    elif content[:4] == b"MM\x00*":
        order = ">"
    else:
        raise _Unreadable("not a TIFF image")
    pages = 0
    seen: set[int] = set()
    (offset,) = struct.unpack(order + "I", content[4:8])
    while offset:
        if offset in seen or offset + 2 > len(content):
            raise _Unreadable("broken TIFF directory chain")
        seen.add(offset)
        (entries,) = struct.unpack(order + "H", content[offset : offset + 2])
        next_field = offset + 2 + 12 * entries
        if next_field + 4 > len(content):
            raise _Unreadable("truncated TIFF directory")
        (offset,) = struct.unpack(order + "I", content[next_field : next_field + 4])
        pages += 1
    return pages


def _image_page(magic: tuple[bytes, ...], label: str) -> Callable[[bytes], int]:
    def count(content: bytes) -> int:
        if not content.startswith(magic):
            raise _Unreadable(f"not a {label} image")
        return 1

    return count


def _text_pages(content: bytes) -> int:
    text = _as_text(content)
    if text is None:
        raise _Unreadable("not UTF-8 text")
    if not text.strip():
        raise _Unreadable("no text")
    return max(1, math.ceil(len(text.splitlines()) / LINES_PER_TEXT_PAGE))


def _rtf_pages(content: bytes) -> int:
    if not content.startswith(b"{\\rtf"):
        raise _Unreadable("not an RTF document")
    return 1


def _ole2_pages(content: bytes) -> int:
    if not content.startswith(_OLE2_MAGIC):
        raise _Unreadable("not an Office 97-2003 document")
    return 1


def _zip_member(content: bytes, required: str, counted_in: str | None, pattern: str) -> int:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = set(archive.namelist())
            if required not in names:
                raise _Unreadable(f"no {required} inside")
            if counted_in is None or counted_in not in names:
                return 1
            metadata = archive.read(counted_in).decode("utf-8", "replace")
    except zipfile.BadZipFile as problem:
        raise _Unreadable(f"not a readable office document ({type(problem).__name__})") from None
    found = re.search(pattern, metadata)
    return max(1, int(found.group(1))) if found else 1


_PAGE_COUNTERS: dict[str, Callable[[bytes], int]] = {
    "pdf": _pdf_pages,
    "tiff": _tiff_pages,
    "png": _image_page((b"\x89PNG\r\n\x1a\n",), "PNG"),
    "jpeg": _image_page((b"\xff\xd8\xff",), "JPEG"),
    "gif": _image_page((b"GIF87a", b"GIF89a"), "GIF"),
    "txt": _text_pages,
    "html": _text_pages,
    "rtf": _rtf_pages,
    "doc": _ole2_pages,
    "xls": _ole2_pages,
    "docx": lambda c: _zip_member(c, "word/document.xml", "docProps/app.xml", r"<Pages>(\d+)<"),
    "xlsx": lambda c: _zip_member(c, "xl/workbook.xml", None, ""),
    "odt": lambda c: _zip_member(c, "content.xml", "meta.xml", r'meta:page-count="(\d+)"'),
}


@dataclass(frozen=True)
class ReceivedPart:
    name: str
    content: bytes
    info: DocumentInfo


def render_received_fax(parts: Sequence[ReceivedPart], cover: CoverPage) -> bytes:
    """The PDF a receiving fax machine would print: cover page, then every page.

    PDF pages are copied; other documents become one placeholder page per counted page,
    so the result has exactly as many pages as were billed.
    """
    writer = PdfWriter()
    if cover.present:
        lines = ["FAX"]
        lines += [f"To: {cover.to}"] if cover.to else []
        lines += [f"From: {cover.from_}"] if cover.from_ else []
        lines += (cover.message or "").splitlines()
        _text_page(writer, lines)
    for part in parts:
        copied = _copy_pdf_pages(writer, part) if part.info.kind == "pdf" else 0
        for page in range(copied + 1, part.info.pages + 1):
            _text_page(writer, [f"{part.name}", f"page {page} of {part.info.pages}"])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _copy_pdf_pages(writer: PdfWriter, part: ReceivedPart) -> int:
    """Copy a PDF's pages; answers how many made it (placeholders stand in for the rest)."""
    before = len(writer.pages)
    try:
        reader = PdfReader(io.BytesIO(part.content), strict=False)
        if reader.is_encrypted:
            reader.decrypt("")
        for page in reader.pages:
            writer.add_page(page)
    except Exception:  # noqa: S110 - a page pypdf cannot copy still prints as a placeholder
        pass
    return len(writer.pages) - before


def _text_page(writer: PdfWriter, lines: list[str]) -> PageObject:
    page = writer.add_blank_page(width=LETTER[0], height=LETTER[1])
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
    )
    shown = b" T* ".join(b"(" + _pdf_string(line) + b") Tj" for line in lines[:45])
    stream = ContentStream(None, writer)
    stream.set_data(b"BT /F1 12 Tf 72 720 Td 15 TL " + shown + b" ET")
    page.replace_contents(stream)
    return page


def _pdf_string(text: str) -> bytes:
    raw = text.encode("latin-1", "replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
