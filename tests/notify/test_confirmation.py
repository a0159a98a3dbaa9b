"""Confirmation reports: the page read back with pypdf (the words are there) and drawn
back with PDFium (the first page's picture is there, not blank); hostile documents give a
report with a note, in bounded time; the worker process's caps hold. A real store."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from faxgate.domain.jobs import Job, JobState
from faxgate.notify.confirmation import Confirmations
from faxgate.notify.report_pdf import Picture, layout_report, report_facts
from faxgate.notify.thumbnail import NoImage, first_page_png, text_lines
from faxgate.store import Store
from faxgate.workers import WorkerFailed, run_isolated
from tests.conftest import wait_for
from tests.notify.mailed import GUID, T0, ended_with_report, mailed_job
from tests.notify.reports import (
    bomb_png,
    fax_tiff,
    images_in,
    inked_pdf,
    inked_png,
    picture_variance,
    report_text,
    text_off_the_page,
)

NOW = T0 + timedelta(minutes=5)
# Hostile documents must come back as a note well within this (the cap is a few seconds).
PROMPTLY = 30.0


# A mailed contract for Dr. Bob Müller; a test names another document, or no cover page.
make_job = functools.partial(mailed_job, intake_ref={}, cover_to="Dr. Bob Müller")


def busy_then(store: Store, job: Job, state: JobState, reason: str) -> Job:
    """A first call busy, a second one ending in `state`."""
    store.transition(job.id, JobState.SUBMITTING, detail="submitting", now=T0)
    store.transition(job.id, JobState.SUBMITTED, detail="submitted", now=T0)
    store.transition(
        job.id, JobState.QUEUED, detail="the line was busy; tried again", now=T0 + timedelta(1 / 24)
    )
    later = T0 + timedelta(minutes=3)
    return ended_with_report(store, job, state, reason, attempts=2, error_code="C", called_at=later)


async def report_of(store: Store, job: Job, mode: str = "with_image", **caps: float) -> bytes:
    confirmations = Confirmations(mode, clock=lambda: NOW, **caps)  # type: ignore[arg-type]
    (notification,) = store.notifications(job.id)
    report = await confirmations.report(
        job, store.documents(job.id), store.events(job.id), notification.payload
    )
    assert report is not None
    return report


# ---------------------------------------------------------------------------- what it says


async def test_a_sent_fax_report_tells_everything_and_shows_the_first_page(
    store: Store, tmp_path: Path
) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf(3)), JobState.SENT, "sent")
    report = await report_of(store, job)
    text = report_text(report)
    for expected in (
        "FAX TRANSMISSION REPORT",
        "+1 415-555-0123",
        "Dr. Bob Müller",
        "SENT",
        "Your fax to +1 415-555-0123 was sent (3 pages), on try 2.",
        "the line was busy; tried again",
        "2024-05-01 10:00:00 UTC",  # the first try
        "2024-05-01 10:04:00 UTC",  # the end
        GUID,
        job.id,
        "contract.pdf",
        "First page of contract.pdf (after the cover page)",
    ):
        assert expected in text, expected
    assert images_in(report) == 1
    assert picture_variance(report) > 1000  # black and white, not an empty box


async def test_a_failed_fax_report_says_why_in_the_replies_words(
    store: Store, tmp_path: Path
) -> None:
    job = busy_then(
        store, make_job(store, tmp_path, inked_pdf()), JobState.FAILED, "no fax machine answered"
    )
    text = report_text(await report_of(store, job))
    assert "FAILED" in text
    assert "Your fax to +1 415-555-0123 could not be sent: no fax machine answered." in text
    assert "faxgate tried 2 times and has given up." in text


async def test_without_the_image_nothing_of_the_contents_is_in_the_report(
    store: Store, tmp_path: Path
) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    report = await report_of(store, job, "without_image")
    assert images_in(report) == 0
    text = report_text(report)
    assert "CONTRACT" not in text
    assert "First page" not in text
    assert job.id in text
    assert await Confirmations("off").report(job, [], [], {}) is None


@pytest.mark.parametrize(
    ("name", "content", "content_type"),
    [
        ("scan.png", inked_png(), "image/png"),
        ("logo.png", inked_png("RGB"), "image/png"),
        ("fax.tiff", fax_tiff(), "image/tiff"),
    ],
)
async def test_images_and_tiff_show_their_first_page(
    store: Store, tmp_path: Path, name: str, content: bytes, content_type: str
) -> None:
    job = make_job(store, tmp_path, content, name, content_type, cover_to=None)
    job = busy_then(store, job, JobState.SENT, "sent")
    report = await report_of(store, job)
    assert f"First page of {name}" in report_text(report)
    assert picture_variance(report) > 1000


def test_transparent_parts_are_paper_white(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(inked_png())
    image = Image.open(io.BytesIO(first_page_png(str(path), "image/png", 200, 200)))
    assert image.mode == "L"
    assert image.getpixel((0, 0)) == 255  # transparent corner: white
    assert image.getpixel((image.width // 2, image.height // 2)) == 0


async def test_a_text_document_is_drawn_from_its_text(store: Store, tmp_path: Path) -> None:
    text = "Dear Bob,\n\nPlease find the signed contract.\n" + "Überweisung 100 €\n" * 30
    job = make_job(store, tmp_path, text.encode(), "message.txt", "text/plain", cover_to=None)
    job = busy_then(store, job, JobState.SENT, "sent")
    report = await report_of(store, job)
    assert images_in(report) == 1
    assert picture_variance(report) > 50  # typed lines, not a blank box
    assert "the provider's layout may differ" in report_text(report)


async def test_an_office_document_gets_a_note_instead(store: Store, tmp_path: Path) -> None:
    word = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    job = make_job(store, tmp_path, b"PK\x03\x04", "letter.docx", word, cover_to=None)
    job = busy_then(store, job, JobState.SENT, "sent")
    report = await report_of(store, job)
    assert "faxgate has no picture of how it did" in report_text(report)
    assert images_in(report) == 0


def test_text_pages_wrap_expand_tabs_and_end_at_a_form_feed() -> None:
    lines = text_lines("a\tb\r\n" + "x" * 170 + "\nlast\fnext page\nnot here")
    assert lines == ["a       b", "x" * 80, "x" * 80, "x" * 10, "last"]
    assert len(text_lines("line\n" * 500)) == 60


def test_a_text_page_draws_without_a_monospaced_font_on_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import ImageFont

    truetype = ImageFont.truetype

    def only_pillows_own(font: object, *args: Any, **kwargs: Any) -> ImageFont.FreeTypeFont:
        if isinstance(font, str):  # a font file on the machine: none here
            raise OSError("cannot open resource")
        return truetype(font, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageFont, "truetype", only_pillows_own)
    path = tmp_path / "message.txt"
    path.write_text("Dear Bob,\n" + "Please call me back.\n" * 40)
    with Image.open(io.BytesIO(first_page_png(str(path), "text/plain", 510, 660))) as image:
        assert ImageStat.Stat(image).var[0] > 50


def test_a_text_page_that_is_not_utf8_still_draws(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Grüße aus Köln\n".encode("latin-1") * 40)
    with Image.open(io.BytesIO(first_page_png(str(path), "text/plain", 510, 660))) as image:
        assert image.size[0] <= 510
        assert image.size[1] <= 660
        assert ImageStat.Stat(image).var[0] > 50


async def test_names_beyond_latin_1_do_not_stop_the_report(store: Store, tmp_path: Path) -> None:
    job = make_job(store, tmp_path, inked_pdf(), "合同 – Vertrag.pdf", cover_to="Zoë Łukasz 李")
    job = busy_then(store, job, JobState.SENT, "sent")
    text = report_text(await report_of(store, job, "without_image"))
    assert "Zoë Lukasz ?" in text
    assert "?? - Vertrag.pdf" in text


def test_layout_is_one_page_however_many_tries(store: Store, tmp_path: Path) -> None:
    job = make_job(store, tmp_path, inked_pdf())
    for n in range(30):
        at = T0 + timedelta(minutes=n)
        store.transition(job.id, JobState.SUBMITTING, detail="submitting", now=at)
        store.transition(job.id, JobState.SUBMITTED, detail="submitted", now=at)
        store.transition(job.id, JobState.QUEUED, detail="the line was busy " * 20, now=at)
    facts = report_facts(job, store.documents(job.id), store.events(job.id), {}, NOW)
    assert len(facts.tries) == 30
    text = report_text(layout_report(facts, Picture(None, "First page", "No image: a test.")))
    assert "18 earlier tries left out" in text
    assert "No image: a test." in text


def test_endless_provider_text_stays_on_the_one_page(store: Store, tmp_path: Path) -> None:
    job = make_job(store, tmp_path, inked_pdf(), "x" * 200 + ".pdf")
    job = busy_then(store, job, JobState.FAILED, "the line was busy " * 500)
    (notification,) = store.notifications(job.id)
    facts = report_facts(
        job, store.documents(job.id), store.events(job.id), notification.payload, NOW
    )
    report = layout_report(facts, Picture(None, "First page", "No image."))
    assert text_off_the_page(report) == 0
    text = report_text(report)
    assert "FAILED" in text
    assert job.id in text
    assert "No image." in text


# ---------------------------------------------------------------------------- hostile


@pytest.mark.parametrize(
    ("name", "content", "content_type", "note"),
    [
        ("bomb.png", bomb_png(), "image/png", "the image is too large to draw safely"),
        ("cut.pdf", inked_pdf()[:500], "application/pdf", "the PDF cannot be read"),
        ("junk.pdf", b"%PDF-1.7\n" + os.urandom(4096), "application/pdf", "cannot be read"),
        ("junk.png", b"\x89PNG\r\n\x1a\n" + os.urandom(64), "image/png", "cannot be read"),
    ],
    # Named by the file: random bytes in an id would differ between a parallel run's workers.
    ids=["bomb.png", "cut.pdf", "junk.pdf", "junk.png"],
)
async def test_hostile_documents_give_a_report_with_a_note(
    store: Store, tmp_path: Path, name: str, content: bytes, content_type: str, note: str
) -> None:
    job = make_job(store, tmp_path, content, name, content_type)
    job = busy_then(store, job, JobState.SENT, "sent")
    started = time.monotonic()
    async with asyncio.timeout(PROMPTLY):
        report = await report_of(store, job)
    text = report_text(report)
    assert f"No image: {name} could not be drawn" in text
    assert note in text
    # The facts are all there.
    assert "SENT" in text
    assert job.id in text
    assert images_in(report) == 0
    assert time.monotonic() - started < PROMPTLY


async def test_a_300_page_pdf_costs_its_first_page(store: Store, tmp_path: Path) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf(300)), JobState.SENT, "sent")
    async with asyncio.timeout(PROMPTLY):
        report = await report_of(store, job, draw_seconds=5)
    assert picture_variance(report) > 1000


async def test_a_document_gone_from_the_spool_gets_a_note(store: Store, tmp_path: Path) -> None:
    job = busy_then(store, make_job(store, tmp_path, inked_pdf()), JobState.SENT, "sent")
    for document in store.documents(job.id):
        document.path.unlink()
    text = report_text(await report_of(store, job))
    assert "No image: contract.pdf is no longer on this machine." in text


# ---------------------------------------------------------------------------- the worker


def spin() -> None:
    while True:
        pass


def hoard() -> int:
    kept = [bytearray(64 * 1024 * 1024) for _ in range(64)]  # 4 GiB
    return len(kept)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def refuse() -> None:
    raise NoImage("the PDF has no pages")


async def test_a_worker_that_never_ends_is_stopped_by_its_caps() -> None:
    started = time.monotonic()
    # The CPU cap ("too long") or, on a machine too busy to give it that CPU time within
    # a second more, the wall clock's ("longer than").
    with pytest.raises(WorkerFailed, match=r"too long|longer than"):
        await run_isolated(spin, seconds=1, memory=1024**3)
    assert time.monotonic() - started < PROMPTLY


async def test_the_loop_runs_on_while_a_worker_draws() -> None:
    """A page that never finishes drawing costs the event loop nothing: it keeps turning,
    with no gap longer than a blink, until the worker's cap ends it."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run_isolated(spin, seconds=1, memory=1024**3))
    longest, last, turns = 0.0, loop.time(), 0
    while not task.done():
        await asyncio.sleep(0)
        now = loop.time()
        longest, last, turns = max(longest, now - last), now, turns + 1
    with pytest.raises(WorkerFailed):
        await task
    assert turns > 100
    assert longest < 0.5


async def test_a_worker_is_held_to_its_memory() -> None:
    with pytest.raises(WorkerFailed, match="more memory"):
        await run_isolated(hoard, seconds=20, memory=512 * 1024**2)


async def test_a_worker_that_dies_is_a_failure_not_a_hang() -> None:
    with pytest.raises(WorkerFailed, match="killed"):
        await run_isolated(die, seconds=20, memory=1024**3)


async def test_what_a_worker_raises_comes_back_in_words() -> None:
    with pytest.raises(WorkerFailed, match=r"^the PDF has no pages$"):
        await run_isolated(refuse, seconds=20, memory=1024**3)


def spin_telling(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    spin()


async def test_cancelling_the_call_ends_the_worker(tmp_path: Path) -> None:
    told = tmp_path / "pid"
    task = asyncio.create_task(run_isolated(spin_telling, str(told), seconds=60, memory=1024**3))
    pid = int(await wait_for(lambda: told.exists() and told.read_text(), what="the worker"))
    assert _running(pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_for(lambda: not _running(pid), what="the worker ended")


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
