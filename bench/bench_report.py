"""What a confirmation report's first-page image costs: time and memory per document,
beside reading the same file with what faxgate already uses (pypdf; Pillow for images).

Run from the repository: `.venv/bin/python bench/bench_report.py [--rounds 7]`.

Documents as offices fax them: a scanned page (a gray image of random samples, as a
scanner's PDF), a 10-page typed PDF, a 300-page PDF, a fax TIFF (1-bit, Group 4, fine
mode), a 12-megapixel phone photo (JPEG), a screenshot (PNG) and a typed message as text
(message.txt, drawn as a typewritten page). For each:

- baseline: pypdf opens the PDF and counts its pages (faxgate does this with every PDF it
  takes); for an image, Pillow decodes it whole; a text is read;
- drawing: faxgate.notify.thumbnail.first_page_png, the first page reduced to the
  report's box, in this process: CPU time (process_time), the median of the rounds;
- isolated: the same through faxgate.workers.run_isolated, as the daemon does it (a
  fresh process from the forkserver, capped): wall time, the median of the rounds;
- memory: what the work adds to the highest resident memory (VmHWM) of a fresh worker
  process that has imported pypdf, Pillow and PDFium already, for the drawing and for
  the baseline alike;
- layout: report_pdf.layout_report with the image, CPU time;
- mail image: the PNG of page 1 an inbound fax's mail carries (inbound.compose's
  PAGE_IMAGE_PIXELS), its size in KiB.

The figures go to bench/README.md (section "Confirmation reports").
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faxgate.workers import run_isolated

# Each worker process imports this file again, as the daemon's imports its `faxgate`
# script (some 20 ms): so the libraries are imported where they are used, not above.
if TYPE_CHECKING:
    from faxgate.notify.report_pdf import ReportFacts

WIDTH, HEIGHT = 510, 660  # report_pdf.PICTURE_PIXELS, checked in main()
MEMORY = 1024**3
PRELOAD = ("faxgate.notify.thumbnail", "PIL.Image", "PIL.PngImagePlugin", "pypdfium2")


# ---------------------------------------------------------------------------- documents


def scanned_pdf() -> bytes:
    """One page showing a gray image of random samples, as a scanner writes it."""
    from fpdf import FPDF
    from PIL import Image

    rng = random.Random(1)
    image = Image.frombytes("L", (850, 1100), rng.randbytes(850 * 1100))
    pdf = FPDF(unit="pt", format="letter")
    pdf.add_page()
    pdf.image(image, x=0, y=0, w=612, h=792)
    return bytes(pdf.output())


def typed_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="letter")
    pdf.set_font("Helvetica", "", 11)
    line = "The parties agree to the terms set out below, signed and dated. " * 2
    for page in range(pages):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.cell(0, 30, f"Agreement, page {page + 1}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for _ in range(40):
            pdf.multi_cell(0, 14, line, new_x="LMARGIN", new_y="NEXT")
            if pdf.get_y() > 740:
                break
    return bytes(pdf.output())


def long_pdf(pages: int) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(typed_pdf(1))))
    for _ in range(pages - 1):
        writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def fax_tiff() -> bytes:
    from PIL import Image

    rng = random.Random(2)
    image = Image.new("1", (1728, 2200), 1)
    for _ in range(400):
        x, y = rng.randrange(100, 1600), rng.randrange(100, 2100)
        image.paste(0, (x, y, x + rng.randrange(20, 120), y + 12))
    out = io.BytesIO()
    image.save(out, format="TIFF", compression="group4", dpi=(204, 196))
    return out.getvalue()


def photo_jpeg() -> bytes:
    from PIL import Image

    rng = random.Random(3)
    small = Image.frombytes("RGB", (400, 300), rng.randbytes(400 * 300 * 3))
    out = io.BytesIO()
    small.resize((4000, 3000), Image.Resampling.BICUBIC).save(out, format="JPEG", quality=90)
    return out.getvalue()


def screenshot_png() -> bytes:
    from PIL import Image

    image = Image.new("RGB", (1920, 1080), "white")
    for y in range(0, 1080, 40):
        image.paste((30, 30, 30), (100, y, 1800, y + 14))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def text_message() -> bytes:
    paragraph = (
        "Dear colleague,\n\nPlease find below the prescription for the patient we spoke\n"
        "about this morning. Call me at the practice if anything is unclear.\n\n"
    )
    return (paragraph * 20).encode()


DOCUMENTS: list[tuple[str, Callable[[], bytes], str, int]] = [
    ("scanned page PDF", scanned_pdf, "application/pdf", 1),
    ("typed PDF, 10 pages", lambda: typed_pdf(10), "application/pdf", 10),
    ("PDF, 300 pages", lambda: long_pdf(300), "application/pdf", 300),
    ("fax TIFF, G4 fine", fax_tiff, "image/tiff", 1),
    ("photo JPEG 12 MP", photo_jpeg, "image/jpeg", 1),
    ("screenshot PNG", screenshot_png, "image/png", 1),
    ("text message", text_message, "text/plain", 2),
]


# ---------------------------------------------------------------------------- measures


def baseline(path: str, content_type: str) -> int:
    """What faxgate does today with such a file: pypdf counts a PDF's pages; an image is
    decoded whole by Pillow."""
    from PIL import Image
    from pypdf import PdfReader

    if content_type == "application/pdf":
        return len(PdfReader(path).pages)
    if content_type == "text/plain":
        return len(Path(path).read_bytes())
    with Image.open(path) as image:
        image.load()
        return image.width


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def drawing_peak(path: str, content_type: str) -> int:
    """KiB the drawing adds to the worker's peak, its libraries already imported."""
    from faxgate.notify.thumbnail import first_page_png

    _libraries()
    before = peak_kib()
    first_page_png(path, content_type, WIDTH, HEIGHT)
    return peak_kib() - before


def baseline_peak(path: str, content_type: str) -> int:
    """KiB the baseline adds to the worker's peak, its libraries already imported."""
    _libraries()
    before = peak_kib()
    baseline(path, content_type)
    return peak_kib() - before


def _libraries() -> None:
    import pypdfium2
    from PIL import Image, TiffImagePlugin
    from pypdf import PdfReader

    del pypdfium2, Image, TiffImagePlugin, PdfReader


def idle_peak() -> int:
    return peak_kib()


def nothing() -> int:
    return 0


def cpu_ms(call: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.process_time()
        call()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times)


async def isolated_ms(task: Callable[..., Any], args: tuple[Any, ...], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run_isolated(task, *args, seconds=20, memory=MEMORY, preload=PRELOAD)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def in_worker(task: Callable[..., int], *args: str) -> int:
    return await run_isolated(task, *args, seconds=60, memory=MEMORY, preload=PRELOAD)


def facts() -> ReportFacts:
    from faxgate.notify.report_pdf import ReportFacts, Try

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return ReportFacts(
        number="+1 415-555-0100",
        cover_name="Dr. Bob Example",
        outcome="SENT",
        sent=True,
        sentence="Your fax to +1 415-555-0100 was sent (3 pages).",
        reason=None,
        pages=3,
        tries=[Try(1, now, "the fax was sent")],
        started=now,
        ended=now,
        documents=["contract.pdf"],
        job_id="1k344n0zjkmv",
        provider_id="0123456789abcdef0123456789abcdef01234567",
        printed=now,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    from _common import banner, ratio, table

    from faxgate.inbound.compose import PAGE_IMAGE_PIXELS
    from faxgate.notify import confirmation, report_pdf
    from faxgate.notify.report_pdf import Picture, layout_report
    from faxgate.notify.thumbnail import first_page_png

    assert (WIDTH, HEIGHT) == report_pdf.PICTURE_PIXELS
    assert confirmation.DRAW_PRELOAD == PRELOAD
    banner("Confirmation reports: a first page drawn, beside reading the file")
    idle = await in_worker(idle_peak)
    process = await isolated_ms(nothing, (), rounds)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, make, content_type, pages in DOCUMENTS:
            path = Path(scratch) / label.replace(" ", "_").replace(",", "")
            path.write_bytes(make())
            name = str(path)
            base = cpu_ms(functools.partial(baseline, name, content_type), rounds)
            draw = cpu_ms(
                functools.partial(first_page_png, name, content_type, WIDTH, HEIGHT), rounds
            )
            args = (name, content_type, WIDTH, HEIGHT)
            wall = await isolated_ms(first_page_png, args, rounds)
            base_peak = await in_worker(baseline_peak, name, content_type)
            draw_peak = await in_worker(drawing_peak, name, content_type)
            png = first_page_png(name, content_type, WIDTH, HEIGHT)
            page = Picture(png, "First page")
            layout = cpu_ms(functools.partial(layout_report, facts(), page), rounds)
            mail_png = first_page_png(name, content_type, *PAGE_IMAGE_PIXELS)
            rows.append(
                [
                    label,
                    pages,
                    f"{path.stat().st_size / 1024:.0f}",
                    f"{base:.1f}",
                    f"{draw:.1f}",
                    ratio(draw, base),
                    f"{wall:.0f}",
                    f"{base_peak / 1024:.1f}",
                    f"{draw_peak / 1024:.1f}",
                    f"{layout:.1f}",
                    f"{len(mail_png) / 1024:.0f}",
                ]
            )
    print(
        table(
            [
                "document",
                "pages",
                "KiB",
                "baseline ms",
                "drawing ms",
                "ratio",
                "isolated ms (wall)",
                "baseline MiB",
                "drawing MiB",
                "layout ms",
                "mail image KiB",
            ],
            rows,
        )
    )
    print()
    print(f"CPU ms: the median of {rounds} rounds. Isolated: the wall time of the whole call,")
    print(f"of which a process that does nothing takes {process:.0f} ms. MiB: what the work")
    print("adds to a fresh worker's peak resident memory, its libraries already imported (an")
    print(f"idle worker: {idle / 1024:.0f} MiB, the forkserver's imports included).")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
