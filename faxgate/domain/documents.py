"""Which documents can be faxed, and how many of them at once. Pure rules, no IO.

The provider converts the files itself; faxgate only refuses what it cannot take, early
and with a reason a person understands, instead of paying for a conversion failure.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Final

from pypdf import PasswordType, PdfReader

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


def check_unlocked(name: str, content_type: str, content: bytes) -> None:
    """Refuse a PDF that needs a password to open: the provider cannot convert it, and its
    failure would not say why."""
    if content_type == "application/pdf" and _encrypted_pdf(content):
        raise DocumentRefused(f"{name}: the PDF is protected by a password; send it without one")


def _encrypted_pdf(content: bytes) -> bool:
    """Whether opening the PDF asks for a password. One locked only against editing (an
    owner password, an empty user password) opens, and is faxed."""
    if b"/Encrypt" not in content:  # every encrypted PDF names it, in plain, at its end
        return False
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        return reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except Exception:  # damaged, or a cipher pypdf cannot undo here: the provider judges
        return False


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
