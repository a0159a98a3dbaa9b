"""Which documents can be faxed, and how many of them at once. Pure rules, no IO.

The provider converts the files itself; faxgate only refuses what it cannot take, early
and with a reason a person understands, instead of paying for a conversion failure.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from pypdf import PasswordType, PdfReader

# pypdf warns about every fault it works around ("EOF marker not found"); faxgate says
# in its own words what it refuses, and a PDF pypdf can read is no news.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# Extension -> content type of every kind of document the provider converts.
ACCEPTED_TYPES: Final[dict[str, str]] = {
    ".pdf": "application/pdf",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".txt": "text/plain",
    ".doc": "application/msword",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xls": "application/vnd.ms-excel",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".rtf": "application/rtf",
    ".html": "text/html",
    ".htm": "text/html",
}

# The provider's limits for one send (see docs/hellofax.md).
MAX_FILES: Final = 10
MAX_TOTAL_BYTES: Final = 30 * 1024 * 1024

_EOF_WINDOW: Final = 1024

# What a file starts with, for the kinds whose start is unmistakable.
_SIGNATURES: Final[dict[str, tuple[bytes, ...]]] = {
    "application/pdf": (b"%PDF-",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
}


class DocumentRefused(ValueError):
    """A document faxgate will not send; the message says why, in plain words."""


@dataclass(frozen=True, slots=True)
class DocumentCheck:
    name: str
    content_type: str


def accepted_list() -> str:
    """The accepted kinds for a message to a person, e.g. "PDF, TIFF, PNG, ..."."""
    seen: list[str] = []
    for extension in ACCEPTED_TYPES:
        label = {".htm": ".html", ".tif": ".tiff", ".jpeg": ".jpg"}.get(extension, extension)
        if label[1:].upper() not in seen:
            seen.append(label[1:].upper())
    return ", ".join(seen)


def check_document(name: str, size: int, head: bytes) -> DocumentCheck:
    """The document's content type, or DocumentRefused with the reason.

    `head` is the file's first bytes (a few hundred are plenty): a file named .pdf that is
    not a PDF is refused here rather than failing at the provider after conversion.
    """
    extension = PurePath(name).suffix.lower()
    content_type = ACCEPTED_TYPES.get(extension)
    if content_type is None:
        kind = f"{extension} files" if extension else "files without an extension"
        raise DocumentRefused(f"{name}: {kind} cannot be faxed; accepted are {accepted_list()}")
    if size == 0:
        raise DocumentRefused(f"{name}: the file is empty")
    signatures = _SIGNATURES.get(content_type)
    if signatures and not head.startswith(signatures):
        raise DocumentRefused(f"{name}: the file does not look like a {extension[1:].upper()}")
    return DocumentCheck(name=name, content_type=content_type)


def check_readable(name: str, content_type: str, content: bytes) -> None:
    """Refuse a PDF the provider could not convert, with the reason: one cut off (sent or
    saved only in part), one whose structure is damaged, one that needs a password to
    open. It must open and show its pages, as the provider's converter reads it: about a
    millisecond for a sound PDF, more only for one whose cross-reference must be rebuilt.
    Other kinds pass: only their first bytes are checked (check_document)."""
    if content_type != "application/pdf":
        return
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        # Every encrypted PDF names /Encrypt in plain; looking first spares pypdf the work.
        if b"/Encrypt" in content and reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # a cipher pypdf cannot undo here: the provider judges
                return
            if opened == PasswordType.NOT_DECRYPTED:
                raise DocumentRefused(
                    f"{name}: the PDF is protected by a password; send it without one"
                )
        pages = len(reader.pages)
    except DocumentRefused:
        raise
    except Exception:  # pypdf's own errors, and its bugs on damaged files
        pages = 0
    if pages >= 1:
        return
    if not _pdf_complete(content):
        raise DocumentRefused(
            f"{name}: the PDF is incomplete (it was cut off when saved or sent); "
            "send the whole file"
        )
    raise DocumentRefused(
        f"{name}: the PDF is damaged and cannot be opened; save it again and send it"
    )


def _pdf_complete(content: bytes) -> bool:
    """Whether the file ends as every PDF does: "%%EOF" in its last 1024 bytes (trailing
    blanks and NULs aside), where readers look for it. A file cut short lacks it."""
    tail = content[-64 * 1024 :].rstrip(b" \t\r\n\f\0")
    return b"%%EOF" in tail[-_EOF_WINDOW:]


def check_batch(sizes: Sequence[int]) -> None:
    """Refuse a set of documents the provider would refuse as one send."""
    if not sizes:
        raise DocumentRefused("there is nothing to fax: no document was given")
    if len(sizes) > MAX_FILES:
        raise DocumentRefused(
            f"{len(sizes)} documents are too many for one fax; the limit is {MAX_FILES}"
        )
    total = sum(sizes)
    if total > MAX_TOTAL_BYTES:
        raise DocumentRefused(
            f"the documents add up to {total / 1048576:.1f} MB; one fax takes at most "
            f"{MAX_TOTAL_BYTES // 1048576} MB"
        )
