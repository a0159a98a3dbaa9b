"""faxgate's own page count, for a provider whose reports carry none (v3): the documents'
pages and the cover page, or unknown, never a guess."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from faxgate.domain.codes import StatusCode
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.provider import FaxReport
from faxgate.sending.pages import own_page_count
from faxgate.sending.tracker import Tracker
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document
from tests.sending.test_tracker import POLICY, submit


def tiff(frames: int) -> bytes:
    out = io.BytesIO()
    images = [Image.new("1", (64, 64), color=1) for _ in range(frames)]
    images[0].save(out, format="TIFF", save_all=True, append_images=images[1:])
    return out.getvalue()


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, format="PNG")
    return out.getvalue()


def job_with(
    store: Store, tmp_path: Path, files: list[tuple[str, bytes, str]], cover: str | None = None
) -> Job:
    spool = Spool(tmp_path / "spool")
    documents = [NewDocument(name, spool.store_bytes(data), kind) for name, data, kind in files]
    (job,) = store.create_jobs(
        [
            NewJob(
                to_number="+14155550123",
                intake=Intake.CLI,
                documents=documents,
                cover_message=cover,
            )
        ]
    )
    return job


def count(store: Store, job: Job) -> int | None:
    return own_page_count(store.documents(job.id), cover_page=job.cover_message is not None)


def test_pdf_pages_tiff_frames_images_and_the_cover_page(store: Store, tmp_path: Path) -> None:
    files = [
        ("a.pdf", pdf_document(3), "application/pdf"),
        ("scan.tif", tiff(2), "image/tiff"),
        ("photo.png", png(), "image/png"),
    ]
    assert count(store, job_with(store, tmp_path, files)) == 6
    assert count(store, job_with(store, tmp_path, files, cover="Please sign")) == 7


def test_a_kind_the_provider_lays_out_or_a_damaged_file_leaves_it_unknown(
    store: Store, tmp_path: Path
) -> None:
    text = [("a.pdf", pdf_document(1), "application/pdf"), ("n.txt", b"hello", "text/plain")]
    assert count(store, job_with(store, tmp_path, text)) is None
    damaged = [("a.pdf", b"%PDF-1.4 nothing more", "application/pdf")]
    assert count(store, job_with(store, tmp_path, damaged)) is None
    assert count(store, job_with(store, tmp_path, [])) is None
    assert count(store, job_with(store, tmp_path, [], cover="A cover page alone")) == 1


def v3_report(guid: str, status: StatusCode) -> FaxReport:
    """A v3 fax as the seam carries it: no page count."""
    return FaxReport(guid=guid, to="14155550123", status_code=status, num_pages_billed=None)


async def test_a_report_without_pages_ends_the_job_with_faxgates_count(
    store: Store, tmp_path: Path
) -> None:
    tracker = Tracker(store, POLICY)
    job = job_with(store, tmp_path, [("a.pdf", pdf_document(2), "application/pdf")], cover="Hi")
    submit(store, job, "f" * 40)
    done = await tracker.observe(v3_report("f" * 40, StatusCode.SENT), source="callback")
    assert done is not None
    assert (done.state, done.pages) == (JobState.SENT, 3)
    (report,) = store.notifications(job.id)
    assert report.payload["pages"] == 3


async def test_a_fax_presumed_sent_reports_faxgates_count(store: Store, tmp_path: Path) -> None:
    tracker = Tracker(store, POLICY)
    job = job_with(store, tmp_path, [("a.pdf", pdf_document(4), "application/pdf")])
    submitted = submit(store, job, "e" * 40)
    done = await tracker.presume_sent(submitted, "404 for the fax")
    assert done is not None
    assert (done.state, done.pages) == (JobState.PRESUMED_SENT, 4)
    (report,) = store.notifications(job.id)
    assert report.payload["pages"] == 4


async def test_the_providers_count_wins_over_faxgates(store: Store, tmp_path: Path) -> None:
    tracker = Tracker(store, POLICY)
    job = job_with(store, tmp_path, [("a.pdf", pdf_document(2), "application/pdf")])
    submit(store, job, "d" * 40)
    billed = FaxReport(
        guid="d" * 40, to="14155550123", status_code=StatusCode.SENT, num_pages_billed=5
    )
    done = await tracker.observe(billed, source="poll")
    assert done is not None
    assert done.pages == 5
