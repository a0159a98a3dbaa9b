"""A reduced image of a document's first page, as a confirmation report shows it.

PDF pages are drawn by PDFium (pypdfium2), images and TIFF read by Pillow; the result is
a grayscale PNG no larger than the box asked for. Only the first page is touched: a
300-page PDF costs what its first page costs. Pillow and PDFium are imported here only
when used: the worker's forkserver has them already, the daemon never needs them.

This code runs on documents people sent, so it runs in a process of its own with a cap
on memory and time (faxgate.workers.run_isolated; faxgate.notify.confirmation calls it):
what it raises comes back as the note a report prints instead of the image. Office
documents are laid out by the provider, not by faxgate, so there is nothing here that
would draw them as they were sent: `drawable` says no, and the report says so. Plain text
is drawn here as a simple typewritten page (80 columns, 60 lines) from the text as
faxgate hands it over; the provider's own layout may differ.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

PDF: Final = "application/pdf"
IMAGES: Final = frozenset({"image/png", "image/jpeg", "image/gif", "image/tiff"})
TEXT: Final = "text/plain"
# A typewritten page: letter at 150 dpi, an inch of margin, 80 columns by 60 lines.
_TEXT_PAGE: Final = (1275, 1650)
_TEXT_MARGIN: Final = 150
_TEXT_COLUMNS: Final = 80
_TEXT_LINES: Final = 60
# Enough for any first page of text, however long the lines (they wrap).
_TEXT_READ: Final = _TEXT_COLUMNS * _TEXT_LINES * 4
# Pillow refuses larger images (the decompression-bomb guard): 60 million pixels is a
# 600 dpi scan of a tabloid page, or a large phone photo, with room to spare.
MAX_PIXELS: Final = 60_000_000


class NoImage(Exception):
    """The page cannot be drawn; the message says why, for the report."""


def drawable(content_type: str) -> bool:
    """Whether faxgate can draw this kind of document's first page."""
    return content_type in (PDF, TEXT) or content_type in IMAGES


def first_page_png(path: str, content_type: str, width: int, height: int) -> bytes:
    """The first page of the document at `path`, reduced to fit width x height pixels,
    as a grayscale PNG. NoImage when it cannot be drawn."""
    if content_type == PDF:
        image = _pdf_page(path, width, height)
    elif content_type in IMAGES:
        image = _image(path, width, height)
    elif content_type == TEXT:
        image = _text_page(path, width, height)
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


def text_lines(text: str) -> list[str]:
    """The first page's lines of `text`: tabs to 8 columns, long lines wrapped at 80
    columns, up to 60 lines or a form feed."""
    lines: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        page_ends = "\f" in raw
        raw = raw.split("\f", 1)[0].expandtabs(8)
        raw = "".join(c if c.isprintable() else " " for c in raw)
        lines += [raw[i : i + _TEXT_COLUMNS] for i in range(0, len(raw), _TEXT_COLUMNS)] or [""]
        if page_ends or len(lines) >= _TEXT_LINES:
            break
    return lines[:_TEXT_LINES]


def _text_page(path: str, width: int, height: int) -> PilImage:
    from PIL import Image, ImageDraw, ImageFont

    with open(path, "rb") as handle:
        text = handle.read(_TEXT_READ).decode("utf-8", errors="replace").replace("\ufffd", "?")
    page_width, page_height = _TEXT_PAGE
    cell_width = (page_width - 2 * _TEXT_MARGIN) / _TEXT_COLUMNS
    cell_height = (page_height - 2 * _TEXT_MARGIN) / _TEXT_LINES
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    try:
        font = ImageFont.truetype("DejaVuSansMono.ttf", 20)
    except OSError:  # not installed: Pillow's own font, set in the same cells
        font = ImageFont.load_default(20)
    page = Image.new("L", _TEXT_PAGE, 255)
    draw = ImageDraw.Draw(page)
    # A monospaced font draws a line at once; any other gets each character in its own
    # cell, so the columns still line up.
    whole_lines = font.getlength("i") == font.getlength("W")
    for row, line in enumerate(text_lines(text)):
        y = _TEXT_MARGIN + row * cell_height
        if whole_lines:
            draw.text((_TEXT_MARGIN, y), line, fill=0, font=font)
            continue
        for column, char in enumerate(line):
            if not char.isspace():
                draw.text((_TEXT_MARGIN + column * cell_width, y), char, fill=0, font=font)
    page.thumbnail((width, height))
    return page


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
