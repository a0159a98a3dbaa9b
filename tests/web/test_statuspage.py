"""The status page: escaping on its own, and the page of a whole daemon as headless
Chromium renders it (the DOM it builds, not our own text)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from faxgate.app import Daemon, started
from faxgate.domain.inbound import InboundFax, NewInboundFax
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.store import Member, NewJob
from faxgate.web.health import HealthReport
from faxgate.web.statuspage import StatusSnapshot, render_page
from tests import peers
from tests.daemon import fast_settings, queue, settled
from tests.web.browser import HEADLESS

HOSTILE = "<script>document.title='owned'</script><img src=x onerror=alert(1)>&amp;"
NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
BROWSER_DEADLINE = 90.0  # seconds: a cold Chromium on two busy cores is slow


# ---------------------------------------------------------------------- a DOM to look at


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self, tag: str | None = None) -> list[Element]:
        found = [self] if tag in (None, self.tag) else []
        for child in self.children:
            if isinstance(child, Element):
                found.extend(child.iter(tag))
        return found

    def by_id(self, element_id: str) -> Element:
        (found,) = [e for e in self.iter() if e.attrs.get("id") == element_id]
        return found


_VOID = {"meta", "link", "br", "img", "input", "hr", "col", "base", "source", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self._open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self._open[-1].children.append(element)
        if tag not in _VOID:
            self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self._open[-1].children.append(data)


def parse(document: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(document)
    builder.close()
    return builder.root


def cells(row: Element) -> list[str]:
    return [cell.text.strip() for cell in row.iter("td")]


# ---------------------------------------------------------------------- the browser


async def browser_dom(url: str, profile: Path) -> str:
    """The DOM headless Chromium built from `url`, serialized."""
    process = await asyncio.create_subprocess_exec(
        peers.command("chromium"),
        *HEADLESS,
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), BROWSER_DEADLINE)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"chromium did not finish within {BROWSER_DEADLINE:g}s") from None
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


# ---------------------------------------------------------------------- rendering alone


def a_job(job_id: str, state: JobState, **values: object) -> Job:
    base: dict[str, object] = {
        "id": job_id,
        "created_at": NOW,
        "updated_at": NOW,
        "state": state,
        "intake": Intake.SMTP,
        "to_number": "+14155550123",
    }
    return Job(**{**base, **values})  # type: ignore[arg-type]


def an_inbound_fax(**values: object) -> InboundFax:
    base: dict[str, object] = {
        "id": "in1",
        "received_at": NOW,
        "provider_guid": "g-in-1",
        "to_number": "+14155550100",
        "from_number": "+12125550199",
        "pages": 2,
        "arrived_at": None,
        "route": "default",
        "document": None,
        "note": None,
    }
    return InboundFax(**{**base, **values})  # type: ignore[arg-type]


def test_every_value_from_outside_is_escaped() -> None:
    snapshot = StatusSnapshot(
        taken_at=NOW,
        counts={JobState.QUEUED: 1, JobState.FAILED: 2},
        jobs=[a_job("j1", JobState.FAILED, reason=HOSTILE, to_number='"><b>x</b>')],
        inbound=[an_inbound_fax(from_number=HOSTILE, route="<i>r</i>", note="a & b")],
        health=HealthReport(checked_at=NOW, problems=(f"the queue is stuck ({HOSTILE})",)),
    )
    page = render_page(snapshot)
    assert "<script>" not in page
    assert "<img" not in page
    assert "<b>x" not in page
    assert "<i>r" not in page
    assert "&lt;script&gt;document.title=&#x27;owned&#x27;&lt;/script&gt;" in page
    assert "&amp;amp;" in page  # an entity in the text stays text
    assert "&quot;&gt;&lt;b&gt;x&lt;/b&gt;" in page
    assert "a &amp; b" in page
    # As a browser's parser reads it: the words are there, as text.
    dom = parse(page)
    assert not dom.iter("script")
    assert not dom.iter("img")
    (row,) = [r for r in dom.by_id("jobs").iter("tr") if r.attrs.get("data-job") == "j1"]
    assert cells(row)[6] == HOSTILE
    assert cells(row)[2] == '"><b>x</b>'
    assert HOSTILE in dom.by_id("health").text


def test_a_store_without_inbound_faxes_says_so() -> None:
    snapshot = StatusSnapshot(taken_at=NOW, counts={}, jobs=[], inbound=None)
    dom = parse(render_page(snapshot))
    assert "keeps no inbound faxes" in dom.by_id("inbound").text
    assert "no faxes yet" in dom.by_id("jobs").text
    assert [cell.strip() for cell in cells(dom.by_id("queue").iter("tr")[-1])] == ["0"] * len(
        JobState
    )


def test_the_instances_sharing_the_store_are_listed_alive_or_gone() -> None:
    members = [
        Member(
            "gw1:41:ab",
            alive=True,
            host="gw1",
            pid=41,
            version="1.0",
            started_at=NOW,
            last_seen=NOW,
            sending=2,
            claimed=1,
        ),
        Member(HOSTILE, alive=False, host=HOSTILE, pid=7, version="0.9", last_seen=NOW),
    ]
    snapshot = StatusSnapshot(
        taken_at=NOW, counts={}, jobs=[], inbound=None, instances=members, instance="gw1:41:ab"
    )
    page = render_page(snapshot)
    assert "<script>" not in page
    dom = parse(page)
    rows = [r for r in dom.by_id("instances").iter("tr") if "data-instance" in r.attrs]
    assert [cells(r)[:3] for r in rows] == [
        ["gw1:41:ab (this one)", "alive", "gw1"],
        [HOSTILE, "gone", HOSTILE],
    ]
    assert cells(rows[0])[7:] == ["2", "1", "0"]
    assert rows[1].attrs["class"] == "gone"
    assert "Instances: 1 alive" in page
    # Alone on SQLite: no section at all.
    alone = render_page(StatusSnapshot(taken_at=NOW, counts={}, jobs=[], inbound=None))
    assert 'id="instances"' not in alone


# ---------------------------------------------------------------------- in a browser


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(fast_settings(tmp_path / "state")) as running:
        yield running


async def test_the_page_shows_the_jobs_in_a_browser(daemon: Daemon, tmp_path: Path) -> None:
    sent = await queue(daemon, "+14155550123")
    failed = await queue(daemon, "+14155550003")  # the sandbox: not allocated
    sent, failed = await settled(daemon, [sent, failed])
    # A reason with markup in it, as a provider's message might carry; held by its
    # not_before so the dispatcher leaves it alone until it is cancelled.
    later = datetime.now(UTC) + timedelta(hours=1)
    (held,) = daemon.store.create_jobs(
        [NewJob(to_number="+14155550124", intake=Intake.CLI, not_before=later)]
    )
    daemon.store.transition(held.id, JobState.CANCELLED, detail="test", reason=HOSTILE)
    daemon.store.record_inbound(
        NewInboundFax(
            provider_guid="inbound-guid-1",
            to_number="+14155550100",
            from_number="+12125550199",
            pages=3,
            arrived_at=None,
            route="<b>front desk</b>",
            document=None,
            note="no document came with it",
        )
    )

    url = f"http://127.0.0.1:{daemon.http.port}/"
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src" not in answer.headers["content-security-policy"]  # none at all
    assert "default-src 'none'" in answer.headers["content-security-policy"]

    dom = parse(await browser_dom(url, tmp_path / "chromium"))
    assert dom.iter("title")[0].text == "faxgate status"  # no script ran
    assert not dom.iter("script")
    assert not dom.iter("img")
    assert "Health: ok" in dom.by_id("health").text

    rows = {r.attrs["data-job"]: cells(r) for r in dom.by_id("jobs").iter("tr") if r.attrs}
    assert rows[sent.id][:5] == [sent.id, "sent", "+14155550123", "1", str(sent.pages)]
    assert rows[failed.id][:3] == [failed.id, "failed", "+14155550003"]
    assert "not allocated" in rows[failed.id][6]
    assert rows[held.id][:3] == [held.id, "cancelled", "+14155550124"]
    assert rows[held.id][6] == HOSTILE  # shown as text
    assert list(rows) == [held.id, failed.id, sent.id]  # newest first

    queue_row = dom.by_id("queue")
    counts = dict(
        zip(
            [th.text for th in queue_row.iter("th")],
            [td.text for td in queue_row.iter("td")],
            strict=True,
        )
    )
    assert counts == {state.value: "0" for state in JobState} | {
        "sent": "1",
        "failed": "1",
        "cancelled": "1",
    }

    (fax_row,) = [r for r in dom.by_id("inbound").iter("tr") if "data-fax" in r.attrs]
    fax = cells(fax_row)
    assert fax[2:6] == ["+12125550199", "+14155550100", "3", "<b>front desk</b>"]
    assert fax[6] == "no document came with it"
