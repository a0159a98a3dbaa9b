"""What the daemon's status pages make of a job's documents: a picture of each first page
and, once the fax has ended, its confirmation report, drawn in worker processes."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path

import httpx
from PIL import Image, ImageStat

from faxgate.app import Daemon, started
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.store.spool import Spool
from tests.daemon import fast_settings, settled
from tests.notify.reports import inked_pdf, picture_variance, report_text


async def queued_contract(daemon: Daemon) -> Job:
    """A contract whose first page has ink on it, queued for one number (no wake-up)."""
    request = FaxRequest(
        numbers=[parse_fax_number("+14155550100")],
        documents=[IncomingDocument("contract.pdf", inked_pdf())],
        intake=Intake.CLI,
    )
    spool = Spool(daemon.settings.spool_dir)
    (job,) = await asyncio.to_thread(queue_fax, daemon.store, spool, request)
    return job


async def test_the_daemon_draws_a_documents_first_page_for_its_job_page(tmp_path: Path) -> None:
    async with started(fast_settings(tmp_path / "state")) as daemon:
        job = await queued_contract(daemon)
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            page = (await http.get(f"/jobs/{job.id}")).text
            (picture,) = re.findall(r'<img[^>]* src="([^"]+page1\.png)"', page)
            answer = await http.get(picture)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(answer.content)).convert("L")
    assert image.width > 100
    assert ImageStat.Stat(image).stddev[0] > 10  # the title and the block, not a blank page


async def test_an_ended_jobs_report_can_be_downloaded_from_its_page(tmp_path: Path) -> None:
    async with started(fast_settings(tmp_path / "state")) as daemon:
        job = await queued_contract(daemon)
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            daemon.dispatcher.wake()
            (ended,) = await settled(daemon, [job])
            page = (await http.get(f"/jobs/{job.id}")).text
            (link,) = re.findall(r'<a href="([^"]+/report\.pdf)"', page)
            answer = await http.get(link)
    assert ended.state.value == "sent"
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert f"fax-report-{job.id}.pdf" in answer.headers["content-disposition"]
    words = report_text(answer.content)
    assert job.id in words
    assert "SENT" in words
    assert picture_variance(answer.content) > 100  # the contract's first page is in it
