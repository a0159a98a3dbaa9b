"""The status page at / on faxgate's HTTP server: the queue, the faxes out (filtered by
state, number and sender, a page at a time), the last faxes in, the last 24 hours as a
chart and the health checks, at a glance in a browser. Read-only, and it refreshes itself.

It shows fax numbers, names and reasons to whoever reaches it: the HTTP server binds
loopback by default, and asks for a password (faxgate.web.guard) when told to, which it
must be when bound elsewhere (see docs/monitoring.md).

The filters are an HTML form sent as query parameters; everything is done on the server.
Every value on the page is escaped (faxgate.web.markup); the page carries no script, and
its Content-Security-Policy forbids any.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from typing import Final

from faxgate.clock import utc_now
from faxgate.domain.inbound import InboundFax
from faxgate.domain.jobs import Job, JobState
from faxgate.store import Member, Store
from faxgate.store.views import HourCounts, JobFilter
from faxgate.web.chart import chart_start, hour_bars, render_chart
from faxgate.web.health import Health, HealthReport
from faxgate.web.markup import PAGE_HEADERS, attr, document_page, href, row, segment, table
from faxgate.web.markup import text as _text
from faxgate.web.markup import time as _time

__all__ = [
    "MAX_FILTER_LENGTH",
    "PAGE_HEADERS",
    "RECENT_INBOUND",
    "RECENT_JOBS",
    "REFRESH_SECONDS",
    "BadQuery",
    "ListQuery",
    "StatusPage",
    "StatusSnapshot",
    "parse_query",
    "render_page",
]

RECENT_JOBS: Final = 50  # jobs per page of the list
RECENT_INBOUND: Final = 20
REFRESH_SECONDS: Final = 15
MAX_FILTER_LENGTH: Final = 200
MAX_PAGE: Final = 100_000

# States that want a person's eye are marked on the page.
_ALERT_STATES: Final = frozenset({JobState.FAILED, JobState.UNCERTAIN})

RecentInbound = Callable[[int], Sequence[InboundFax]]


class BadQuery(ValueError):
    """A query string the list cannot be filtered by; the message is for the user."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The list's filters and which page of it, as the query string gave them."""

    filter: JobFilter = field(default_factory=JobFilter)
    page: int = 1  # from 1

    @property
    def filtered(self) -> bool:
        f = self.filter
        return f.state is not None or bool(f.number) or bool(f.sender)

    def parameters(self, page: int | None = None) -> dict[str, object]:
        f = self.filter
        wanted = page if page is not None else self.page
        return {
            "state": f.state.value if f.state is not None else "",
            "number": f.number,
            "sender": f.sender,
            "page": wanted if wanted > 1 else "",
        }


def parse_query(query: Mapping[str, str]) -> ListQuery:
    """The list's query from the request's parameters; BadQuery says what is wrong."""
    state_text = query.get("state", "").strip()
    try:
        state = JobState(state_text) if state_text else None
    except ValueError:
        raise BadQuery(f"there is no state {state_text!r}") from None
    number = query.get("number", "").strip()
    sender = query.get("sender", "").strip()
    if len(number) > MAX_FILTER_LENGTH or len(sender) > MAX_FILTER_LENGTH:
        raise BadQuery(f"a filter is at most {MAX_FILTER_LENGTH} characters")
    if number and not any(c.isdigit() for c in number):
        raise BadQuery("a number to look for needs at least one digit")
    page_text = query.get("page", "").strip() or "1"
    if not page_text.isascii() or not page_text.isdigit() or not 1 <= int(page_text) <= MAX_PAGE:
        raise BadQuery(f"there is no page {page_text!r}")
    return ListQuery(JobFilter(state, number, sender), int(page_text))


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything the page shows, read at one moment."""

    taken_at: datetime
    counts: Mapping[JobState, int]
    jobs: Sequence[Job]
    inbound: Sequence[InboundFax] | None  # None: this faxgate keeps no inbound faxes
    health: HealthReport | None = None
    query: ListQuery = field(default_factory=ListQuery)
    more: bool = False  # older jobs match beyond this page
    hours: HourCounts | None = None  # None: no chart
    # The instances sharing a PostgreSQL store (None: alone, on SQLite), and this one's name.
    instances: Sequence[Member] | None = None
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class Cluster:
    """This instance's name among those sharing a PostgreSQL store, and how to read them
    all at a moment."""

    instance: str
    members: Callable[[datetime], Sequence[Member]]


@dataclass(frozen=True, slots=True)
class StatusPage:
    """Reads the snapshot (in a thread: the store blocks) and renders it."""

    store: Store
    _: KW_ONLY
    health: Health | None = None
    recent_inbound: RecentInbound | None = None
    clock: Callable[[], datetime] = utc_now
    # The sending policy's calls at once per number, as in use (a reload changes it).
    calls_per_number: Callable[[], int | None] = lambda: 1
    cluster: Cluster | None = None

    def now(self) -> datetime:
        return self.clock()

    async def snapshot(self, query: ListQuery | None = None) -> StatusSnapshot:
        wanted = query or ListQuery()
        report = await self.health.check() if self.health is not None else None
        now = self.clock()
        return await asyncio.to_thread(self._read, wanted, now, report)

    def _read(self, query: ListQuery, now: datetime, report: HealthReport | None) -> StatusSnapshot:
        counts = self.store.count_by_state()
        jobs, more = self.store.find_jobs(
            query.filter, offset=(query.page - 1) * RECENT_JOBS, limit=RECENT_JOBS
        )
        recent_inbound = self.recent_inbound
        digits = query.filter.digits
        inbound: Sequence[InboundFax] | None
        if recent_inbound is None:
            inbound = None
        elif digits:
            inbound = self.store.find_inbound(digits, RECENT_INBOUND)
        else:
            inbound = recent_inbound(RECENT_INBOUND)
        hours = self.store.hour_counts(chart_start(now))
        cluster = self.cluster
        instances = None if cluster is None else cluster.members(now)
        instance = None if cluster is None else cluster.instance
        return StatusSnapshot(
            now, counts, jobs, inbound, report, query, more, hours, instances, instance
        )

    async def render(self, query: ListQuery | None = None) -> str:
        return render_page(await self.snapshot(query))


# ---------------------------------------------------------------------- rendering (pure)


def _health_section(report: HealthReport | None) -> str:
    if report is None:
        return ""
    if report.healthy:
        return '<section id="health" class="ok"><h2>Health: ok</h2></section>'
    problems = "".join(f"<li>{_text(problem)}</li>" for problem in report.problems)
    return (
        '<section id="health" class="unhealthy"><h2>Health: unhealthy</h2>'
        f"<ul>{problems}</ul></section>"
    )


def _queue_section(counts: Mapping[JobState, int]) -> str:
    head = "".join(
        f'<th><a href="{href("/", {"state": state.value})}">{_text(state.value)}</a></th>'
        for state in JobState
    )
    cells = []
    for state in JobState:
        count = counts.get(state, 0)
        alert = ' class="alert"' if state in _ALERT_STATES and count else ""
        cells.append(f'<td data-state="{_text(state.value)}"{alert}>{count:d}</td>')
    return (
        "<section><h2>Queue</h2>\n"
        f'<table id="queue">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody><tr>{''.join(cells)}</tr></tbody>\n</table></section>"
    )


def _chart_section(snapshot: StatusSnapshot) -> str:
    if snapshot.hours is None:
        return ""
    chart = render_chart(hour_bars(snapshot.hours, snapshot.taken_at))
    return f"<section><h2>The last 24 hours</h2>\n{chart}</section>"


def _filter_form(query: ListQuery) -> str:
    f = query.filter
    options = ['<option value="">any</option>'] + [
        f'<option value="{attr(state.value)}"'
        f"{' selected' if f.state is state else ''}>{_text(state.value)}</option>"
        for state in JobState
    ]
    return (
        '<form id="filters" method="get" action="/">'
        f'<label>state <select name="state">{"".join(options)}</select></label>'
        '<label>number <input type="search" name="number" inputmode="tel"'
        f' maxlength="{MAX_FILTER_LENGTH}" value="{attr(f.number)}"></label>'
        '<label>sender <input type="search" name="sender"'
        f' maxlength="{MAX_FILTER_LENGTH}" value="{attr(f.sender)}"></label>'
        '<button type="submit">Filter</button>'
        + ('<a href="/">clear</a>' if query.filtered else "")
        + "</form>"
    )


def _pager(snapshot: StatusSnapshot) -> str:
    query = snapshot.query
    links = []
    if query.page > 1:
        links.append(
            f'<a rel="prev" href="{href("/", query.parameters(query.page - 1))}">newer</a>'
        )
    if snapshot.more:
        links.append(
            f'<a rel="next" href="{href("/", query.parameters(query.page + 1))}">older</a>'
        )
    if not links:
        return ""
    return f'<nav class="pages">page {query.page:d} {" ".join(links)}</nav>'


def _job_link(job_id: str) -> str:
    return f'<a href="{href("/jobs/" + segment(job_id))}">{_text(job_id)}</a>'


def _jobs_section(snapshot: StatusSnapshot) -> str:
    rows = [
        row(
            (
                _job_link(job.id),
                f'<span class="state {_text(job.state.value)}">{_text(job.state.value)}</span>',
                _text(job.to_number),
                _text(job.attempt),
                _text(job.pages),
                _time(job.updated_at),
                _text(job.reason),
            ),
            f' data-job="{_text(job.id)}"',
        )
        for job in snapshot.jobs
    ]
    headings = ("job", "state", "number", "tries", "pages", "updated", "reason")
    query = snapshot.query
    empty = "no faxes match" if query.filtered else "no faxes yet"
    tab = table("jobs", headings, rows, empty)
    first_page = not query.filtered and query.page == 1
    title = f"Last {RECENT_JOBS} faxes out" if first_page else "Faxes out"
    return (
        f"<section><h2>{title}</h2>\n{_filter_form(query)}\n{_pager(snapshot)}\n"
        f"{tab}\n{_pager(snapshot)}</section>"
    )


def _inbound_section(inbound: Sequence[InboundFax] | None, query: ListQuery) -> str:
    if inbound is None:
        return (
            '<section><h2>Faxes in</h2><p id="inbound" class="none">'
            "This faxgate keeps no inbound faxes.</p></section>"
        )
    rows = [
        row(
            (
                f'<a href="{href("/inbound/" + segment(fax.id))}">{_text(fax.id)}</a>',
                _time(fax.when),
                _text(fax.from_number),
                _text(fax.to_number),
                _text(fax.pages),
                _text(fax.route),
                _text(fax.note),
            ),
            f' data-fax="{_text(fax.id)}"',
        )
        for fax in inbound
    ]
    headings = ("fax", "received", "from", "to", "pages", "route", "note")
    digits = query.filter.digits
    if digits:
        title = f"Last {RECENT_INBOUND} faxes in from or to a number with {_text(digits)}"
        tab = table("inbound", headings, rows, "no faxes in match")
    else:
        title = f"Last {RECENT_INBOUND} faxes in"
        tab = table("inbound", headings, rows, "no faxes received yet")
    return f"<section><h2>{title}</h2>\n{tab}</section>"


def _instances_section(members: Sequence[Member] | None, instance: str | None) -> str:
    if members is None:
        return ""
    rows = [
        row(
            (
                _text(member.owner) + (" (this one)" if member.owner == instance else ""),
                "alive" if member.alive else "gone",
                _text(member.host),
                _text(member.pid),
                _text(member.version),
                _time(member.started_at),
                _time(member.last_seen),
                f"{member.sending:d}",
                f"{member.claimed:d}",
                f"{member.notifications:d}",
            ),
            f' data-instance="{_text(member.owner)}"' + ("" if member.alive else ' class="gone"'),
        )
        for member in members
    ]
    headings = (
        "instance",
        "state",
        "host",
        "process",
        "version",
        "started",
        "last seen",
        "sending",
        "claimed",
        "notifications",
    )
    alive = sum(member.alive for member in members)
    tab = table("instances", headings, rows, "no instance has written its heartbeat yet")
    return f"<section><h2>Instances: {alive:d} alive</h2>\n{tab}</section>"


def page_header(taken_at: datetime, refresh: int | None = None) -> str:
    zone = _text(taken_at.astimezone().tzname() or "server time")
    again = f"; this page refreshes every {refresh:d} s" if refresh else ""
    return (
        '<header><h1><a href="/">faxgate</a></h1>\n'
        f"<p>As of {_time(taken_at)} ({zone}){again}.</p>\n</header>"
    )


def render_page(snapshot: StatusSnapshot) -> str:
    """The whole page; every value is escaped."""
    body = "\n".join(
        (
            page_header(snapshot.taken_at, REFRESH_SECONDS),
            _health_section(snapshot.health),
            _queue_section(snapshot.counts),
            _instances_section(snapshot.instances, snapshot.instance),
            _chart_section(snapshot),
            _jobs_section(snapshot),
            _inbound_section(snapshot.inbound, snapshot.query),
        )
    )
    return document_page("faxgate status", body, refresh=REFRESH_SECONDS)


def error_page(taken_at: datetime, title: str, message: str) -> str:
    body = f'{page_header(taken_at)}\n<h2>{_text(title)}</h2>\n<p id="error">{_text(message)}</p>'
    return document_page(f"faxgate: {title}", body)
