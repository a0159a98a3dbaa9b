"""What the confirmation report tests share: documents with something on their first page,
hostile ones, and reading a report back (its text with pypdf, its picture with PDFium)."""

from __future__ import annotations

import io
import struct
import zlib

import pypdfium2 as pdfium
from fpdf import FPDF
from PIL import Image, ImageStat
from pypdf import PdfReader, PdfWriter

from faxgate.notify.report_pdf import PICTURE_HEIGHT, PICTURE_WIDTH, PICTURE_X, PICTURE_Y

POINTS_PER_MM = 72 / 25.4


def inked_pdf(pages: int = 1) -> bytes:
    """A PDF whose first page carries a title and a black block (not blank when drawn);
    the other pages are blank."""
    pdf = FPDF(unit="pt", format="letter")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 36)
    pdf.cell(0, 60, "CONTRACT")
    pdf.rect(72, 200, 468, 300, style="F")
    first = bytes(pdf.output())
    if pages == 1:
        return first
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(first)))
    for _ in range(pages - 1):
        writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def inked_png(mode: str = "RGBA") -> bytes:
    image = Image.new(mode, (400, 300), (255, 255, 255, 0) if mode == "RGBA" else "white")
    image.paste((0, 0, 0, 255) if mode == "RGBA" else "black", (50, 50, 350, 250))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def fax_tiff() -> bytes:
    """A 1-bit G4 TIFF of two pages, as fax software writes them."""
    first = Image.new("1", (1728, 2200), 1)
    first.paste(0, (100, 100, 1600, 900))
    second = Image.new("1", (1728, 2200), 1)
    out = io.BytesIO()
    first.save(out, format="TIFF", compression="group4", save_all=True, append_images=[second])
    return out.getvalue()


def bomb_png(side: int = 100_000) -> bytes:
    """A PNG a few hundred bytes long that claims side x side pixels (10 billion): a
    decompression bomb, refused before anything is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + side // 8) * 8, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def report_text(report: bytes) -> str:
    reader = PdfReader(io.BytesIO(report))
    assert len(reader.pages) == 1, "a report is one page"
    return " ".join(reader.pages[0].extract_text().split())


def picture_area(report: bytes) -> Image.Image:
    """The report's picture box, drawn back at 2 pixels a point."""
    document = pdfium.PdfDocument(report)
    try:
        scale = 2.0
        image: Image.Image = document[0].render(scale=scale).to_pil().convert("L")
    finally:
        document.close()
    px = POINTS_PER_MM * scale
    box = (
        int((PICTURE_X + 1.5) * px),
        int((PICTURE_Y + 1.5) * px),
        int((PICTURE_X + PICTURE_WIDTH - 1.5) * px),
        int((PICTURE_Y + PICTURE_HEIGHT - 1.5) * px),
    )
    return image.crop(box)


def picture_variance(report: bytes) -> float:
    """How much the picture box varies: 0 for a blank box (no image, or a blank page)."""
    return float(ImageStat.Stat(picture_area(report)).var[0])


def images_in(report: bytes) -> int:
    reader = PdfReader(io.BytesIO(report))
    return len(reader.pages[0].images)


def text_off_the_page(report: bytes) -> int:
    """How many characters are drawn below the page's bottom edge or above its top."""
    document = pdfium.PdfDocument(report)
    try:
        page = document[0]
        height = page.get_height()
        text = page.get_textpage()
        boxes = [text.get_charbox(i) for i in range(text.count_chars())]
        return sum(1 for _, bottom, _, top in boxes if bottom < 0 or top > height)
    finally:
        document.close()
