"""The status pages of a fax whose documents [retention] removed: the download answers
410 with words, the pages say when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from faxgate.domain.inbound import NewDelivery
from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.retention import purge
from faxgate.store.spool import Spool
from faxgate.web.server import HttpServer, start_http
from faxgate.web.statuspage import StatusPage
from faxgate.web.statusroutes import add_status_routes
from tests.conftest import pdf_document
from tests.store.test_retention import received
from tests.web.test_statuspage import cells, parse

S = JobState
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass
class Site:
    http: HttpServer
    job_id: str
    fax_id: str

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.port}{path}"


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    now = [T0]
    with Store.open(tmp_path / "faxgate.sqlite3", clock=lambda: now[0]) as store:
        spool = Spool(tmp_path / "spool")
        letter = spool.store_bytes(pdf_document(1), suffix=".pdf")
        [job] = store.create_jobs(
            [
                NewJob(
                    to_number="+14155550123",
                    intake=Intake.CLI,
                    documents=[NewDocument("letter.pdf", letter, "application/pdf")],
                )
            ]
        )
        for state in (S.SUBMITTING, S.SUBMITTED, S.SENT):
            store.transition(job.id, state, detail=state.value)
        fax, _ = store.record_inbound(
            received(spool.store_bytes(pdf_document(1), suffix=".pdf"), "a" * 40),
            [NewDelivery("email", "a@example.org")],
        )
        store.mark_inbound_delivered(fax.id, 0, detail="sent")
        now[0] = T0 + timedelta(days=31)
        report = purge(store, spool.root, timedelta(days=30))
        assert report.files == 2
        app = web.Application()
        add_status_routes(app, StatusPage(store, recent_inbound=store.recent_inbound))
        http = await start_http(app, "127.0.0.1", 0)
        try:
            yield Site(http, job.id, fax.id)
        finally:
            await http.stop()


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url)


@pytest.mark.parametrize(
    "path",
    ["/jobs/{job}/documents/0", "/jobs/{job}/documents/0/page1.png", "/inbound/{fax}/document"],
)
async def test_a_removed_document_is_410_with_words(site: Site, path: str) -> None:
    answer = await get(site.url(path.format(job=site.job_id, fax=site.fax_id)))
    assert answer.status_code == 410
    words = parse(answer.text).by_id("error").text
    assert "removed on 2026-02-05" in words
    assert "[retention] documents" in words


async def test_the_pages_say_when_the_documents_were_removed(site: Site) -> None:
    answer = await get(site.url(f"/jobs/{site.job_id}"))
    assert answer.status_code == 200
    dom = parse(answer.text)
    first = next(r for r in dom.by_id("documents").iter("tr") if r.attrs.get("data-seq") == "0")
    assert not first.iter("a")
    assert "removed on 2026-02-05" in cells(first)[-1]
    answer = await get(site.url(f"/inbound/{site.fax_id}"))
    assert "removed on 2026-02-05" in parse(answer.text).by_id("document").text
