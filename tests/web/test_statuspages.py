"""The status pages over real HTTP on loopback: the page per job and per inbound fax,
downloads, 404s, the list's filters and paging, and the chart; HTML read with a parser."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from faxgate.domain.inbound import InboundFax, NewInboundFax, ReceivedDocument
from faxgate.domain.jobs import Document, Event, Intake, Job, JobState
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool
from faxgate.store.views import HourCounts, JobFilter
from faxgate.web.chart import hour_bars, render_chart
from faxgate.web.detail import JobReport, JobView, KeptDocument, PageImage, render_job
from faxgate.web.guard import StatusAccess
from faxgate.web.server import HttpServer, start_http
from faxgate.web.statuspage import RECENT_JOBS, StatusPage
from faxgate.web.statusroutes import add_status_routes
from tests.conftest import pdf_document
from tests.web.test_statuspage import Element, cells, parse

S = JobState
HOSTILE_NAME = '<b>"odd"</b> name.txt'
EXTRA_JOBS = RECENT_JOBS + 5  # enough for a second page


def tiny_png(width: int = 40, height: int = 52) -> bytes:
    """A real grey PNG, made by hand so the tests need no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xc8" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()


async def first_page_png(path: Path, content_type: str) -> bytes | None:
    return PNG if content_type == "application/pdf" and path.suffix == ".pdf" else None


@dataclass
class Site:
    store: Store
    spool: Spool
    http: HttpServer
    sent: Job
    failed: Job
    fax: InboundFax
    bare_fax: InboundFax
    letter: bytes
    fax_pdf: bytes

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.port}{path}"


def fill(store: Store, spool: Spool) -> tuple[Job, Job, InboundFax, InboundFax, bytes, bytes]:
    letter = pdf_document(2)
    note = spool.store_bytes(b"please sign", suffix=".txt")
    (sent,) = store.create_jobs(
        [
            NewJob(
                to_number="+14155550123",
                intake=Intake.SMTP,
                intake_ref={"sender": "alice@example.com", "subject": "Contract for bob"},
                from_line="+14155550100",
                cover_to="Dr. Bob <Office>",
                cover_from="Alice",
                cover_message="Two pages follow",
                documents=[
                    NewDocument(
                        "letter.pdf", spool.store_bytes(letter, suffix=".pdf"), "application/pdf"
                    ),
                    NewDocument(HOSTILE_NAME, note, "text/plain"),
                ],
            )
        ]
    )
    store.transition(sent.id, S.SUBMITTING, detail="submitting")
    store.transition(
        sent.id,
        S.SUBMITTED,
        detail="the provider has it",
        data={"guid": "g-1", "status": "P"},
        provider_guid="g-1",
        provider_status="P",
    )
    store.transition(
        sent.id,
        S.QUEUED,
        detail="the line was busy; calling again",
        data={"guid": "g-1", "status": "E", "error": "B"},
        attempt=2,
        provider_guid=None,
    )
    store.transition(sent.id, S.SUBMITTING, detail="submitting")
    store.transition(
        sent.id,
        S.SUBMITTED,
        detail="the provider has it",
        data={"guid": "g-2", "status": "P"},
        provider_guid="g-2",
    )
    sent = store.transition(
        sent.id,
        S.SENT,
        detail="sent",
        data={"guid": "g-2", "status": "S"},
        provider_status="S",
        pages=2,
        reason="sent",
    )
    (failed,) = store.create_jobs(
        [
            NewJob(
                to_number="+12125550001",
                intake=Intake.FOLDER,
                intake_ref={
                    "folder": "/srv/fax/outbox",
                    "drop": "report.pdf",
                    "files": ["report.pdf"],
                },
            )
        ]
    )
    failed = store.transition(
        failed.id,
        S.FAILED,
        detail="not allocated",
        reason="not allocated",
        provider_status="E",
        provider_error="A",
    )
    store.create_jobs(
        [
            NewJob(to_number=f"+1303444{n:04d}", intake=Intake.CLI)
            for n in range(100, 100 + EXTRA_JOBS)
        ]
    )
    fax_pdf = pdf_document(3)
    spooled = spool.store_bytes(fax_pdf, suffix=".pdf")
    fax, _ = store.record_inbound(
        NewInboundFax(
            provider_guid="in-1",
            to_number="+14155550100",
            from_number="+12125550199",
            pages=3,
            arrived_at=None,
            route="front desk",
            document=ReceivedDocument(
                spooled.path, spooled.size, spooled.sha256, "application/pdf"
            ),
        )
    )
    bare, _ = store.record_inbound(
        NewInboundFax(
            provider_guid="in-2",
            to_number="+14155550100",
            from_number=None,
            pages=1,
            arrived_at=None,
            route="front desk",
            document=None,
            note="no document came with it",
        )
    )
    return sent, failed, fax, bare, letter, fax_pdf


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[Store, Spool]]:
    with Store.open(tmp_path / "faxgate.sqlite3") as store:
        yield store, Spool(tmp_path / "spool")


async def serve(
    store: Store,
    *,
    page_image: PageImage | None = None,
    access: StatusAccess | None = None,
    job_report: JobReport | None = None,
) -> HttpServer:
    app = web.Application()
    page = StatusPage(store, recent_inbound=store.recent_inbound)
    add_status_routes(app, page, access=access, page_image=page_image, job_report=job_report)
    return await start_http(app, "127.0.0.1", 0)


@pytest.fixture
async def site(filled: tuple[Store, Spool]) -> AsyncIterator[Site]:
    store, spool = filled
    sent, failed, fax, bare, letter, fax_pdf = fill(store, spool)
    http = await serve(store, page_image=first_page_png)
    try:
        yield Site(store, spool, http, sent, failed, fax, bare, letter, fax_pdf)
    finally:
        await http.stop()


async def get(url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


async def dom_of(url: str) -> Element:
    answer = await get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    return parse(answer.text)


def fields(table: Element) -> dict[str, str]:
    return {tr.iter("th")[0].text.strip(): tr.iter("td")[0].text.strip() for tr in table.iter("tr")}


def links(element: Element) -> list[str]:
    return [a.attrs["href"] for a in element.iter("a")]


# ---------------------------------------------------------------------- a job's page


async def test_the_job_page_tells_the_whole_story(site: Site) -> None:
    job = site.sent
    dom = await dom_of(site.url(f"/jobs/{job.id}"))
    summary = fields(dom.by_id("job"))
    assert summary["state"] == "sent"
    assert summary["number"] == "+14155550123"
    assert summary["from line"] == "+14155550100"
    assert summary["provider id"] == "g-2"
    assert summary["tries"] == "2"
    assert summary["provider status"].startswith("S:")

    events = site.store.events(job.id)
    history = [cells(tr) for tr in dom.by_id("history").iter("tr") if "data-event" in tr.attrs]
    assert len(history) == len(events) == 7
    assert [h[2] for h in history] == ["1", "1", "1", "2", "2", "2", "2"]
    assert history[0][1] == "queued"
    assert history[-1][1] == "submitted → sent"
    assert history[3][3].startswith("E/B:")
    assert "busy" in history[3][3]
    assert history[3][4] == "the line was busy; calling again"
    assert [h[4] for h in history] == [e.detail for e in events]

    cover = fields(dom.by_id("cover"))
    assert cover == {"to": "Dr. Bob <Office>", "from": "Alice", "message": "Two pages follow"}
    intake = fields(dom.by_id("intake"))
    assert intake["came from"] == "smtp"
    assert intake["sender"] == "alice@example.com"
    assert intake["subject"] == "Contract for bob"


async def test_a_failed_job_says_why_in_the_providers_words(site: Site) -> None:
    dom = await dom_of(site.url(f"/jobs/{site.failed.id}"))
    summary = fields(dom.by_id("job"))
    assert summary["state"] == "failed"
    assert summary["provider status"].startswith("E/A: ")
    assert len(summary["provider status"]) > len("E/A: ")
    intake = fields(dom.by_id("intake"))
    assert intake["came from"] == "folder"
    assert intake["hot folder"] == "/srv/fax/outbox"
    assert intake["dropped"] == "report.pdf"
    assert intake["files"] == "report.pdf"


async def test_each_document_downloads_as_the_store_keeps_it(site: Site) -> None:
    job = site.sent
    dom = await dom_of(site.url(f"/jobs/{job.id}"))
    rows = [r for r in dom.by_id("documents").iter("tr") if "data-seq" in r.attrs]
    assert [cells(r)[1] for r in rows] == ["letter.pdf", HOSTILE_NAME]
    assert [cells(r)[3] for r in rows] == ["application/pdf", "text/plain"]
    assert cells(rows[1])[2] == "11 bytes"
    hrefs = [r.iter("a")[0].attrs["href"] for r in rows]
    assert hrefs == [f"/jobs/{job.id}/documents/0", f"/jobs/{job.id}/documents/1"]

    letter = await get(site.url(hrefs[0]))
    assert letter.status_code == 200
    assert letter.content == site.letter
    assert letter.headers["content-type"] == "application/pdf"
    assert letter.headers["content-disposition"].startswith("attachment;")
    note = await get(site.url(hrefs[1]))
    assert note.content == b"please sign"
    assert "sandbox" in note.headers["content-security-policy"]
    assert '"' not in note.headers["content-disposition"].split('filename="')[1][:-1].split('";')[0]


async def test_names_beyond_ascii_show_and_download(
    filled: tuple[Store, Spool],
) -> None:
    store, spool = filled
    dropped = "caf\udce9 ?.pdf"  # a Latin-1 name, as a hot folder keeps it
    (job,) = store.create_jobs(
        [
            NewJob(
                to_number="+14155550123",
                intake=Intake.FOLDER,
                intake_ref={"folder": "/srv/fax", "files": [dropped]},
                documents=[
                    NewDocument("café ?.pdf", spool.store_bytes(b"%PDF-"), "application/pdf")
                ],
            )
        ]
    )
    http = await serve(store)
    try:
        url = f"http://127.0.0.1:{http.port}/jobs/{job.id}"
        dom = await dom_of(url)
        (row,) = [r for r in dom.by_id("documents").iter("tr") if "data-seq" in r.attrs]
        assert cells(row)[1] == "café ?.pdf"
        assert fields(dom.by_id("intake"))["files"] == "caf\ufffd ?.pdf"
        download = await get(f"{url}/documents/0")
        assert download.status_code == 200
        assert download.content == b"%PDF-"
        disposition = download.headers["content-disposition"]
        assert 'filename="caf_ ?.pdf"' in disposition
        assert "filename*=UTF-8''caf%C3%A9%20%3F.pdf" in disposition
    finally:
        await http.stop()


async def test_a_page_picture_shows_only_when_a_renderer_is_given(
    site: Site, filled: tuple[Store, Spool]
) -> None:
    job = site.sent
    dom = await dom_of(site.url(f"/jobs/{job.id}"))
    images = [img.attrs["src"] for img in dom.by_id("documents").iter("img")]
    assert images == [
        f"/jobs/{job.id}/documents/0/page1.png",
        f"/jobs/{job.id}/documents/1/page1.png",
    ]
    picture = await get(site.url(images[0]))
    assert picture.status_code == 200
    assert picture.headers["content-type"] == "image/png"
    assert picture.content == PNG
    undrawable = await get(site.url(f"/jobs/{job.id}/documents/1/page1.png"))
    assert undrawable.status_code == 404

    plain = await serve(filled[0])  # no renderer
    try:
        url = f"http://127.0.0.1:{plain.port}"
        dom = await dom_of(f"{url}/jobs/{job.id}")
        assert not dom.iter("img")
        assert (await get(f"{url}/jobs/{job.id}/documents/0/page1.png")).status_code == 404
        dom = await dom_of(f"{url}/inbound/{site.fax.id}")
        assert not dom.iter("img")
    finally:
        await plain.stop()


async def test_an_ended_jobs_report_downloads_and_a_running_ones_waits(
    filled: tuple[Store, Spool],
) -> None:
    store, spool = filled
    sent, *_ = fill(store, spool)
    (running,) = store.create_jobs([NewJob(to_number="+14155550199", intake=Intake.CLI)])
    asked: list[tuple[str, int, int]] = []

    async def report(job: Job, documents: Sequence[Document], events: Sequence[Event]) -> bytes:
        asked.append((job.id, len(documents), len(events)))
        return b"%PDF-1.7 the report"

    http = await serve(store, job_report=report)
    try:
        url = f"http://127.0.0.1:{http.port}"
        (link,) = [a for a in links(await dom_of(f"{url}/jobs/{sent.id}")) if "report" in a]
        answer = await get(url + link)
        waiting = await dom_of(f"{url}/jobs/{running.id}")
        early = await get(f"{url}/jobs/{running.id}/report.pdf")
    finally:
        await http.stop()
    assert link == f"/jobs/{sent.id}/report.pdf"
    assert answer.status_code == 200
    assert answer.content == b"%PDF-1.7 the report"
    assert answer.headers["content-type"] == "application/pdf"
    assert asked == [(sent.id, 2, len(store.events(sent.id)))]
    assert not [a for a in links(waiting) if "report" in a]
    assert early.status_code == 404
    assert "has not ended yet" in early.text

    plain = await serve(store)  # no reports: no link, no route
    try:
        url = f"http://127.0.0.1:{plain.port}"
        assert not [a for a in links(await dom_of(f"{url}/jobs/{sent.id}")) if "report" in a]
        assert (await get(f"{url}/jobs/{sent.id}/report.pdf")).status_code == 404
    finally:
        await plain.stop()


async def test_a_renderer_that_fails_costs_the_picture_only(site: Site) -> None:
    async def broken(path: Path, content_type: str) -> bytes | None:
        raise RuntimeError("the renderer fell over")

    http = await serve(site.store, page_image=broken)
    try:
        url = f"http://127.0.0.1:{http.port}/jobs/{site.sent.id}"
        assert (await get(f"{url}/documents/0/page1.png")).status_code == 404
        assert (await get(url)).status_code == 200
    finally:
        await http.stop()


async def test_the_other_jobs_of_one_message_are_linked(filled: tuple[Store, Spool]) -> None:
    store, _spool = filled
    first, second = store.create_jobs(
        [
            NewJob(to_number="+14155550123", intake=Intake.CLI, group_id="grp"),
            NewJob(to_number="+14155550124", intake=Intake.CLI, group_id="grp"),
        ]
    )
    http = await serve(store)
    try:
        dom = await dom_of(f"http://127.0.0.1:{http.port}/jobs/{first.id}")
    finally:
        await http.stop()
    assert links(dom.by_id("group")) == [f"/jobs/{second.id}"]


# ---------------------------------------------------------------------- an inbound fax's page


async def test_the_inbound_fax_page_and_its_pdf(site: Site) -> None:
    fax = site.fax
    dom = await dom_of(site.url(f"/inbound/{fax.id}"))
    summary = fields(dom.by_id("fax"))
    assert summary["from"] == "+12125550199"
    assert summary["to"] == "+14155550100"
    assert summary["pages"] == "3"
    assert summary["when"]  # a time, as the server shows it
    (link,) = links(dom.by_id("document"))
    assert link == f"/inbound/{fax.id}/document"
    pdf = await get(site.url(link))
    assert pdf.status_code == 200
    assert pdf.content == site.fax_pdf
    assert pdf.headers["content-type"] == "application/pdf"
    assert f'filename="fax-{fax.id}.pdf"' in pdf.headers["content-disposition"]
    (img,) = dom.iter("img")
    assert (await get(site.url(img.attrs["src"]))).content == PNG

    bare = await dom_of(site.url(f"/inbound/{site.bare_fax.id}"))
    assert "No document came with this fax" in bare.by_id("document").text
    assert (await get(site.url(f"/inbound/{site.bare_fax.id}/document"))).status_code == 404


# ---------------------------------------------------------------------- not found


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/zzzzzzzzzzzz",  # well formed, unknown
        "/jobs/not-a-job",
        "/jobs/..%2F..%2Fetc%2Fpasswd",
        "/jobs/%00",
        "/jobs/{sent}/documents/7",
        "/jobs/{sent}/documents/99999999",
        "/jobs/{sent}/documents/-1",
        "/jobs/{sent}/documents/0/../../../etc/passwd",
        "/inbound/zzzzzzzzzzzz",
        "/inbound/..%2Fspool",
        "/inbound/{sent}/document",  # a job's id is not a fax's
        "/inbound/zzzzzzzzzzzz/page1.png",
    ],
)
async def test_unknown_ids_and_paths_are_404(site: Site, path: str) -> None:
    answer = await get(site.url(path.format(sent=site.sent.id)))
    assert answer.status_code == 404
    assert "Traceback" not in answer.text
    assert "passwd" not in answer.text


async def test_a_document_no_longer_kept_is_404_and_said_so(site: Site) -> None:
    (letter, _note) = site.store.documents(site.sent.id)
    letter.path.unlink()
    answer = await get(site.url(f"/jobs/{site.sent.id}/documents/0"))
    assert answer.status_code == 404
    assert "no longer kept" in parse(answer.text).by_id("error").text
    dom = await dom_of(site.url(f"/jobs/{site.sent.id}"))
    first = next(r for r in dom.by_id("documents").iter("tr") if r.attrs.get("data-seq") == "0")
    assert not first.iter("a")
    assert "no longer kept" in cells(first)


# ---------------------------------------------------------------------- the list


def listed(dom: Element) -> list[str]:
    return [r.attrs["data-job"] for r in dom.by_id("jobs").iter("tr") if "data-job" in r.attrs]


async def test_the_list_links_to_each_page(site: Site) -> None:
    dom = await dom_of(site.url("/?page=2"))
    row = next(r for r in dom.by_id("jobs").iter("tr") if r.attrs.get("data-job") == site.sent.id)
    assert links(row) == [f"/jobs/{site.sent.id}"]
    fax_row = next(
        r for r in dom.by_id("inbound").iter("tr") if r.attrs.get("data-fax") == site.fax.id
    )
    assert links(fax_row) == [f"/inbound/{site.fax.id}"]


async def test_the_list_is_filtered_by_state_number_and_sender(site: Site) -> None:
    assert listed(await dom_of(site.url("/?state=failed"))) == [site.failed.id]
    assert listed(await dom_of(site.url("/?state=sent"))) == [site.sent.id]
    # Digits anywhere in the number, whatever the spacing typed.
    assert listed(await dom_of(site.url("/?number=555+0123"))) == [site.sent.id]
    assert listed(await dom_of(site.url("/?number=%2B1+212"))) == [site.failed.id]
    assert listed(await dom_of(site.url("/?sender=ALICE%40example"))) == [site.sent.id]
    assert listed(await dom_of(site.url("/?sender=%2Fsrv%2Ffax"))) == [site.failed.id]
    # "bob" is in the subject, not the sender.
    none = await dom_of(site.url("/?sender=bob"))
    assert listed(none) == []
    assert "no faxes match" in none.by_id("jobs").text

    # The number narrows the faxes in too, by either of their numbers.
    def faxes_in(dom: Element) -> list[str]:
        return [
            r.attrs["data-fax"] for r in dom.by_id("inbound").iter("tr") if "data-fax" in r.attrs
        ]

    assert faxes_in(await dom_of(site.url("/?number=212+555+0199"))) == [site.fax.id]
    assert set(faxes_in(await dom_of(site.url("/?number=4155550100")))) == {
        site.fax.id,
        site.bare_fax.id,
    }
    assert faxes_in(await dom_of(site.url("/?number=999"))) == []
    assert set(faxes_in(await dom_of(site.url("/?state=failed")))) == {
        site.fax.id,
        site.bare_fax.id,
    }
    both = await dom_of(site.url("/?state=sent&number=0123&sender=alice"))
    assert listed(both) == [site.sent.id]
    # The form shows what was asked for.
    form = both.by_id("filters")
    (selected,) = [o for o in form.iter("option") if "selected" in o.attrs]
    assert selected.attrs["value"] == "sent"
    values = {i.attrs["name"]: i.attrs.get("value") for i in form.iter("input")}
    assert values == {"number": "0123", "sender": "alice"}


async def test_the_list_pages_through_every_job(site: Site) -> None:
    total = EXTRA_JOBS + 2
    first = await dom_of(site.url("/"))
    assert len(listed(first)) == RECENT_JOBS
    (older,) = [a for a in first.iter("a") if a.attrs.get("rel") == "next"][:1]
    second = await dom_of(site.url(older.attrs["href"]))
    assert len(listed(second)) == total - RECENT_JOBS
    assert not set(listed(first)) & set(listed(second))
    # Newest first across every state, as the store has them.
    everyone = sorted(
        (j for state in JobState for j in site.store.jobs_in_states([state])),
        key=lambda j: (j.created_at, j.id),
        reverse=True,
    )
    assert listed(first) + listed(second) == [j.id for j in everyone]
    assert not [a for a in second.iter("a") if a.attrs.get("rel") == "next"]
    assert {a.attrs["href"] for a in second.iter("a") if a.attrs.get("rel") == "prev"} == {"/"}
    # Paging keeps the filters.
    cli = await dom_of(site.url("/?number=1303444"))
    (older,) = [a for a in cli.iter("a") if a.attrs.get("rel") == "next"][:1]
    assert older.attrs["href"] == "/?number=1303444&page=2"
    assert len(listed(await dom_of(site.url(older.attrs["href"])))) == EXTRA_JOBS - RECENT_JOBS


@pytest.mark.parametrize(
    "query",
    ["state=lost", "page=0", "page=x", "page=99999999999", "number=abc", "sender=" + "x" * 201],
)
async def test_a_filter_that_makes_no_sense_is_a_400_page(site: Site, query: str) -> None:
    answer = await get(site.url(f"/?{query}"))
    assert answer.status_code == 400
    assert parse(answer.text).by_id("error").text


def test_the_sender_is_checked_exactly_past_the_first_rows(filled: tuple[Store, Spool]) -> None:
    store, _spool = filled
    # More near misses than one batch read holds, then the one that matches.
    store.create_jobs(
        [
            NewJob(
                to_number="+14155550123",
                intake=Intake.SMTP,
                intake_ref={"sender": "alice@example.com"},
            ),
            *[
                NewJob(
                    to_number="+14155550123",
                    intake=Intake.SMTP,
                    intake_ref={"sender": "carol@example.com", "subject": "for alice"},
                )
                for _ in range(450)
            ],
        ]
    )
    jobs, more = store.find_jobs(JobFilter(sender="alice"), offset=0, limit=10)
    assert [j.intake_ref["sender"] for j in jobs] == ["alice@example.com"]
    assert not more
    # Letters SQL's lower() may not fold: narrowed by the plain part typed, or not at all.
    zoe, hedgehog = store.create_jobs(
        [
            NewJob(to_number="+14155550123", intake=Intake.SMTP, intake_ref={"sender": s})
            for s in ("Zoë@example.com", "Ёжик@example.com")
        ]
    )
    assert [j.id for j in store.find_jobs(JobFilter(sender="ZOË"), offset=0, limit=9)[0]] == [
        zoe.id
    ]
    assert [j.id for j in store.find_jobs(JobFilter(sender="ЁЖИК"), offset=0, limit=9)[0]] == [
        hedgehog.id
    ]
    # Paging over checked rows: each match once.
    pages = [store.find_jobs(JobFilter(sender="carol"), offset=n, limit=100) for n in (0, 100, 400)]
    assert [len(jobs) for jobs, _more in pages] == [100, 100, 50]
    assert [more for _jobs, more in pages] == [True, True, False]
    assert not {j.id for j in pages[0][0]} & {j.id for j in pages[1][0]}


# ---------------------------------------------------------------------- the chart


# The hours themselves are counted by Store.hour_counts, on both backends:
# tests/store/test_hour_counts.py.


async def test_the_chart_shows_the_last_24_hours(site: Site) -> None:
    dom = await dom_of(site.url("/"))
    svg = dom.by_id("chart")
    assert svg.tag == "svg"
    assert svg.attrs["role"] == "img"
    assert dom.by_id("chart-title").text == "Faxes per hour over the last 24 hours"
    assert dom.by_id("chart-desc").text == "In the last 24 hours: 1 sent, 1 failed, 2 received."
    groups = [g for g in svg.iter("g") if "data-hour" in g.attrs]
    assert len(groups) == 24
    now_hour = datetime.now(UTC).strftime("%Y-%m-%dT%H")
    last = groups[-1]
    assert last.attrs["data-hour"] == now_hour
    counts = {r.attrs["class"]: r.attrs["data-count"] for r in last.iter("rect")}
    assert counts == {"bar-sent": "1", "bar-failed": "1", "bar-received": "2"}
    assert [t.text for t in svg.iter("text") if "(" in t.text] == [
        "sent (1)",
        "failed (1)",
        "received (2)",
    ]


# ---------------------------------------------------------------------- escaping, alone

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_every_value_on_a_job_page_is_escaped() -> None:
    now = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    job = Job(
        id="1nh0xzad4hm1",
        created_at=now,
        updated_at=now,
        state=S.FAILED,
        intake=Intake.SMTP,
        to_number=HOSTILE,
        intake_ref={"sender": HOSTILE, "subject": HOSTILE, "files": [HOSTILE]},
        cover_to=HOSTILE,
        cover_from=HOSTILE,
        cover_message=HOSTILE,
        reason=HOSTILE,
        provider_guid=HOSTILE,
        provider_status=HOSTILE,
    )
    document = Document(job.id, 0, HOSTILE, Path("/nowhere"), 10, "0" * 64, HOSTILE)
    event = Event(1, job.id, now, None, S.QUEUED, HOSTILE, {"status": HOSTILE})
    for thumbnails in (False, True):
        page = render_job(
            JobView(job, [KeptDocument(document, kept=True)], [event], []),
            now,
            thumbnails=thumbnails,
        )
        dom = parse(page)
        assert not dom.iter("script")
        assert [img.attrs["src"] for img in dom.iter("img")] == (
            [f"/jobs/{job.id}/documents/0/page1.png"] if thumbnails else []
        )
        assert page.count("&lt;script&gt;") >= 10
        assert fields(dom.by_id("cover"))["to"] == HOSTILE
        assert cells(dom.by_id("history").iter("tr")[1])[4] == HOSTILE


def test_the_chart_of_a_quiet_day_and_of_a_busy_one() -> None:
    now = datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    quiet = parse(render_chart(hour_bars(HourCounts(), now)))
    assert quiet.by_id("chart-desc").text == "In the last 24 hours: 0 sent, 0 failed, 0 received."
    assert {r.attrs["data-count"] for r in quiet.iter("rect") if "data-count" in r.attrs} == {"0"}
    busy = parse(render_chart(hour_bars(HourCounts(sent={"2024-05-01T09": 1234}), now)))
    scale = [t.text for t in busy.iter("text")][:3]
    assert scale == ["0", "2000", "4000"]
    (tallest,) = [r for r in busy.iter("rect") if r.attrs.get("data-count") == "1234"]
    assert 0 < float(tallest.attrs["height"]) <= 200
    # The hour before the current one, the 23rd of 24 groups.
    groups = [g.attrs["data-hour"] for g in busy.iter("g")]
    assert groups.index("2024-05-01T09") == 22


async def test_a_waiting_jobs_page_says_why(site: Site) -> None:
    later = datetime.now(UTC) + timedelta(hours=3)
    first, behind, held = site.store.create_jobs(
        [
            NewJob(to_number="+14155550177", intake=Intake.CLI),
            NewJob(to_number="+14155550177", intake=Intake.CLI),
            NewJob(to_number="+14155550178", intake=Intake.CLI),
        ]
    )
    why = "waiting for 08:00 in America/New_York (the rule 'practices' allows 08:00 to 18:00)"
    site.store.update_fields(held.id, not_before=later, wait_kind="hours", wait_reason=why)

    async def waiting(job: Job) -> str:
        return fields((await dom_of(site.url(f"/jobs/{job.id}"))).by_id("job"))["waiting"]

    assert await waiting(first) == "–"
    assert await waiting(behind) == "behind 1 fax to this number"
    assert await waiting(held) == why
    assert await waiting(site.sent) == "–"
