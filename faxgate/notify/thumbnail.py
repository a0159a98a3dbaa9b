"""A reduced image of a document's first page, as a confirmation report shows it.

PDF pages are drawn by PDFium (pypdfium2), images and TIFF read by Pillow; the result is
a grayscale PNG no larger than the box asked for. Only the first page is touched: a
300-page PDF costs what its first page costs. Pillow and PDFium are imported here only
when used: the worker's forkserver has them already, the daemon never needs them.

This code runs on documents people sent, so it runs in a process of its own with a cap
on memory and time (faxgate.workers.run_isolated; faxgate.notify.confirmation calls it):
what it raises comes back as the note a report prints instead of the image. Text and
office documents are laid out by the provider, not by faxgate, so there is nothing here
that would draw them as they were sent: `drawable` says no, and the report says so.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

PDF: Final = "application/pdf"
IMAGES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/tiff"})
# Pillow refuses larger images (the decompression-bomb guard): 60 million pixels is a
# 600 dpi scan of a tabloid page, or a large phone photo, with room to spare.
MAX_PIXELS: Final = 60_000_000


class NoImage(Exception):
    """The page cannot be drawn; the message says why, for the report."""


def drawable(content_type: str) -> bool:
    """Whether faxgate can draw this kind of document's first page."""
    return content_type == PDF or content_type in IMAGES


def first_page_png(path: str, content_type: str, width: int, height: int) -> bytes:
    """The first page of the document at `path`, reduced to fit width x height pixels,
    as a grayscale PNG. NoImage when it cannot be drawn."""
    if content_type == PDF:
        image = _pdf_page(path, width, height)
    elif content_type in IMAGES:
        image = _image(path, width, height)
    else:
        raise NoImage(f"faxgate does not draw {content_type} documents")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _pdf_page(path: str, width: int, height: int) -> PilImage:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        raise NoImage(f"the PDF cannot be read ({_pdfium_reason(exc)})") from None
    try:
        if len(document) == 0:
            raise NoImage("the PDF has no pages")
        page = document[0]
        page_width, page_height = page.get_size()
        if page_width <= 0 or page_height <= 0:
            raise NoImage("the PDF's first page has no size")
        # A rotated page comes out turned; the thumbnail below fits it in the box.
        scale = min(width / page_width, height / page_height, 4.0)
        bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=True)
        image: PilImage = bitmap.to_pil().convert("L")
    except pdfium.PdfiumError as exc:
        raise NoImage(f"the PDF's first page cannot be drawn ({_pdfium_reason(exc)})") from None
    finally:
        document.close()
    image.thumbnail((width, height))
    return image


def _image(path: str, width: int, height: int) -> PilImage:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # Above MAX_PIXELS Pillow only warns (it refuses at twice as many).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.seek(0)
                opened.draft("L", (width, height))  # JPEG: decoded at a fraction of its size
                image = _on_white(opened)
                image.thumbnail((width, height))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise NoImage(
            f"the image is too large to draw safely (over {MAX_PIXELS // 1_000_000} million pixels)"
        ) from None
    except UnidentifiedImageError:
        raise NoImage("the image cannot be read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow's truncated and corrupt files: OSError ("image file is truncated"),
        # SyntaxError (a bad header), ValueError, EOFError.
        raise NoImage(f"the image cannot be read ({exc})") from None
    return image


def _on_white(image: PilImage) -> PilImage:
    """Grayscale; transparent parts white, as paper is."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(paper, rgba).convert("L")
    return image.convert("L")


def _pdfium_reason(exc: Exception) -> str:
    text = str(exc)
    if "password" in text.lower():
        return "it is protected by a password"
    return text.rsplit(":", 1)[-1].strip().rstrip(".)").lower() or "unknown error"
