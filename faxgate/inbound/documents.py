"""Which files of an inbound callback are kept: documents only, known by content. Pure.

The name and content type the request gives are never trusted: a part is kept when its
first bytes are those of a PDF or TIFF (what fax services deliver) or a common image, and
it gets faxgate's own name with the suffix of what it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HEAD_BYTES: Final = 8  # enough for every signature below


@dataclass(frozen=True, slots=True)
class DocumentKind:
    content_type: str
    suffix: str  # ".pdf"
    label: str  # "PDF", for people


PDF: Final = DocumentKind("application/pdf", ".pdf", "PDF")
TIFF: Final = DocumentKind("image/tiff", ".tif", "TIFF")

_SIGNATURES: Final[tuple[tuple[bytes, DocumentKind], ...]] = (
    (b"%PDF-", PDF),
    (b"II*\x00", TIFF),
    (b"MM\x00*", TIFF),
    (b"\x89PNG\r\n\x1a\n", DocumentKind("image/png", ".png", "PNG")),
    (b"\xff\xd8\xff", DocumentKind("image/jpeg", ".jpg", "JPEG")),
    (b"GIF87a", DocumentKind("image/gif", ".gif", "GIF")),
    (b"GIF89a", DocumentKind("image/gif", ".gif", "GIF")),
)

_BY_CONTENT_TYPE: Final = {kind.content_type: kind for _, kind in _SIGNATURES}


def document_kind(head: bytes) -> DocumentKind | None:
    """What a file is, from its first bytes; None for anything that is not a document."""
    return next((kind for signature, kind in _SIGNATURES if head.startswith(signature)), None)


def kind_of(content_type: str) -> DocumentKind:
    """The kind of a document kept earlier (by its recorded content type)."""
    return _BY_CONTENT_TYPE.get(content_type, DocumentKind(content_type, ".bin", "file"))


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file part of the callback: its position and what its content showed."""

    index: int
    size: int
    kind: DocumentKind | None


@dataclass(frozen=True, slots=True)
class Choice:
    kept: FilePart | None
    note: str | None  # for people: why nothing was kept, or what was left out


def choose_document(parts: list[FilePart]) -> Choice:
    """The first non-empty document among the parts; a note on what was not kept."""
    documents = [part for part in parts if part.kind is not None and part.size > 0]
    if not parts:
        return Choice(None, "the provider's callback included no document")
    if not documents:
        what = "file was" if len(parts) == 1 else f"{len(parts)} files were"
        return Choice(None, f"the callback's {what} not a PDF, TIFF or image, and not kept")
    kept, left = documents[0], len(parts) - 1
    if not left:
        return Choice(kept, None)
    other = "file part was" if left == 1 else "file parts were"
    return Choice(kept, f"{left} more {other} left out")
