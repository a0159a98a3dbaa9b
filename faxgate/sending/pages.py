"""faxgate's own count of a fax's pages, for when the provider gives none.

HelloFax v1 reports the pages it billed; the Dropbox Fax API v3 reports no page count at
all. A report or `faxgate status` saying "3 pages" then counts the job's documents itself:
a PDF's pages, a TIFF's frames, one page per PNG or JPEG, and the cover page. Other kinds
(text, office documents) are laid out by the provider's converter, which faxgate cannot
predict: the count is then unknown rather than a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from PIL import Image
from pypdf import PdfReader

from faxgate.domain.jobs import Document

__all__ = ["document_pages", "own_page_count"]

_ONE_PAGE = frozenset({"image/png", "image/jpeg"})


def document_pages(document: Document) -> int | None:
    """One document's pages, None when its kind or its damage leaves it unknown."""
    path: Path = document.path
    kind = document.content_type
    suffix = path.suffix.lower()
    try:
        if kind == "application/pdf" or suffix == ".pdf":
            return len(PdfReader(path).pages) or None
        if kind == "image/tiff" or suffix in (".tif", ".tiff"):
            with Image.open(path) as image:
                return int(getattr(image, "n_frames", 1))
    except Exception:  # any damage or a file gone: the count is just unknown
        return None
    return 1 if kind in _ONE_PAGE else None


def own_page_count(documents: Iterable[Document], *, cover_page: bool) -> int | None:
    """The fax's pages (its cover page included), or None unless every document counts."""
    total = 1 if cover_page else 0
    counted = False
    for document in documents:
        pages = document_pages(document)
        if pages is None:
            return None
        total += pages
        counted = True
    return total if counted or cover_page else None
