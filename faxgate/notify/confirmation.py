"""Confirmation reports for the reporters: the facts from the store, the first page drawn
in a process of its own, the page laid out (faxgate.notify.report_pdf).

Reports are made by the notifier once a fax has ended, never while a message or a file
is being taken in. Drawing a page runs documents people sent through PDFium or Pillow, so
it gets a fresh process with a cap on memory and time (faxgate.workers.run_isolated): a
decompression bomb, a PDF that takes minutes to draw or one that crashes the library
ends that process only, and the report says in a note that there is no image and why. A
report is always made: nothing about the document can stop it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from faxgate.clock import utc_now
from faxgate.domain.jobs import Document, Event, Job
from faxgate.notify.report_pdf import PICTURE_PIXELS, Picture, layout_report, report_facts
from faxgate.notify.thumbnail import TEXT, drawable, first_page_png
from faxgate.workers import WorkerFailed, run_isolated

log = logging.getLogger("faxgate.notify")

ReportMode = Literal["with_image", "without_image", "off"]

# A first page gets this long and this much memory to be drawn. A fax page takes well
# under a second (bench/bench_report.py); PDFium and Pillow with the interpreter need
# some 100 MB of address space before they draw anything.
DRAW_SECONDS: Final = 20.0
DRAW_MEMORY: Final = 1024 * 1024 * 1024
# Imported once in the forkserver, not in each drawing process.
DRAW_PRELOAD: Final = (first_page_png.__module__, "PIL.Image", "PIL.PngImagePlugin", "pypdfium2")
# Drawings at once: each is a process of its own, and the machine has other work.
_AT_ONCE: Final = 2
THUMBNAIL_PIXELS: Final = (240, 310)  # the status pages' picture of a first page


def report_name(job: Job) -> str:
    """The report's file name in a mail."""
    return f"fax-report-{job.id}.pdf"


@dataclass
class PageDrawer:
    """Draws first pages in processes of their own, capped (faxgate.workers.run_isolated),
    at most two at once; shared by the reports and the inbound mail."""

    seconds: float = DRAW_SECONDS
    memory: int = DRAW_MEMORY

    def __post_init__(self) -> None:
        self._drawing = asyncio.Semaphore(_AT_ONCE)

    async def first_page(self, path: Path, content_type: str, width: int, height: int) -> bytes:
        """The first page as a grayscale PNG within width x height pixels. WorkerFailed
        (the reason in plain words) or OSError (no process could be started) otherwise."""
        async with self._drawing:
            return await run_isolated(
                first_page_png,
                str(path),
                content_type,
                width,
                height,
                seconds=self.seconds,
                memory=self.memory,
                preload=DRAW_PRELOAD,
            )


@dataclass
class Confirmations:
    """Makes a job's confirmation report as the settings ask ([reports] confirmation)."""

    mode: ReportMode
    draw_seconds: float = DRAW_SECONDS
    draw_memory: int = DRAW_MEMORY
    clock: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        self.drawer = PageDrawer(self.draw_seconds, self.draw_memory)

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    async def report(
        self,
        job: Job,
        documents: Sequence[Document],
        events: Sequence[Event],
        payload: Mapping[str, Any],
        *,
        fallback: Callable[[Document], Path | None] | None = None,
    ) -> bytes | None:
        """The report's PDF, or None when reports are off. `fallback` names another copy
        of a document whose spool copy is gone (a hot folder's placed file).

        A report that cannot be made (a fault in faxgate, not in the document) is logged
        and left out, also None: the reply and the result it rides with still go."""
        if self.mode == "off":
            return None
        try:
            facts = report_facts(job, documents, events, payload, self.clock())
            picture = None
            if self.mode == "with_image":
                picture = await self.first_page(job, documents, fallback)
            return await asyncio.to_thread(layout_report, facts, picture)
        except Exception:
            log.exception("no confirmation report for job %s: it could not be made", job.id)
            return None

    async def first_page(
        self,
        job: Job,
        documents: Sequence[Document],
        fallback: Callable[[Document], Path | None] | None = None,
    ) -> Picture:
        """The first page as sent, reduced; or a note saying why there is no image."""
        cover = bool(job.cover_to or job.cover_from or job.cover_message)
        if not documents:
            return Picture(None, "Cover page", "Only the provider's cover page was sent.")
        first = documents[0]
        label = f"First page of {first.name}" + (" (after the cover page)" if cover else "")
        path = first.path if first.path.exists() else (fallback(first) if fallback else None)
        if path is None or not path.exists():
            return Picture(None, label, f"No image: {first.name} is no longer on this machine.")
        if not drawable(first.content_type):
            return Picture(
                None,
                label,
                f"No image: the provider lays out {_kind(first)} documents itself; "
                "faxgate has no picture of how it did.",
            )
        try:
            png = await self.drawer.first_page(path, first.content_type, *PICTURE_PIXELS)
        except (WorkerFailed, OSError) as exc:  # OSError: no process could be started
            log.warning("no image of the first page job=%s document=%s: %s", job.id, path, exc)
            return Picture(None, label, f"No image: {first.name} could not be drawn: {exc}.")
        notes = ["The provider's cover page went first."] if cover else []
        if first.content_type == TEXT:
            notes.append("Drawn from the text as sent; the provider's layout may differ.")
        return Picture(png, label, " ".join(notes) or None)

    async def on_request(
        self, job: Job, documents: Sequence[Document], events: Sequence[Event]
    ) -> bytes:
        """An ended job's report for the status pages to download, with its first page
        whatever the report setting (the pages show the documents themselves)."""
        facts = report_facts(job, documents, events, {}, self.clock())
        picture = await self.first_page(job, documents)
        return await asyncio.to_thread(layout_report, facts, picture)

    async def thumbnail(self, path: Path, content_type: str) -> bytes | None:
        """A document's first page, small, for the status pages (whatever the report
        setting: they show the documents themselves); None when it cannot be drawn."""
        if not drawable(content_type):
            return None
        try:
            return await self.drawer.first_page(path, content_type, *THUMBNAIL_PIXELS)
        except (WorkerFailed, OSError) as exc:
            log.warning("no picture of the first page path=%s: %s", path, exc)
            return None


def _kind(document: Document) -> str:
    kind = document.content_type.split("/", 1)[-1]
    return {"plain": "text", "msword": "Word"}.get(kind, Path(document.name).suffix[1:] or kind)
