"""The status page at / on faxgate's HTTP server: the queue, the last faxes out and in,
and the health checks, at a glance in a browser. Read-only, and it refreshes itself.

It shows fax numbers, names and reasons to whoever reaches it. The HTTP server binds
loopback by default; when the provider's callbacks come through a reverse proxy, let the
proxy forward /callbacks/ only (see docs/monitoring.md).

Every value on the page came from outside at some point (numbers, names, the provider's
words), so every one is escaped; the page carries no script, and its Content-Security-Policy
forbids any.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from faxgate.clock import utc_now
from faxgate.domain.inbound import InboundFax
from faxgate.domain.jobs import Job, JobState
from faxgate.store import Store
from faxgate.web.health import Health, HealthReport

__all__ = [
    "PAGE_HEADERS",
    "RECENT_INBOUND",
    "RECENT_JOBS",
    "REFRESH_SECONDS",
    "StatusPage",
    "StatusSnapshot",
    "render_page",
]

RECENT_JOBS: Final = 50
RECENT_INBOUND: Final = 20
REFRESH_SECONDS: Final = 15

PAGE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none';"
        " frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

# States that want a person's eye are marked on the page.
_ALERT_STATES: Final = frozenset({JobState.FAILED, JobState.UNCERTAIN})

RecentInbound = Callable[[int], Sequence[InboundFax]]


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """Everything the page shows, read at one moment."""

    taken_at: datetime
    counts: Mapping[JobState, int]
    jobs: Sequence[Job]
    inbound: Sequence[InboundFax] | None  # None: this faxgate keeps no inbound faxes
    health: HealthReport | None = None


class StatusPage:
    """Reads the snapshot (in a thread: the store blocks) and renders it."""

    def __init__(
        self,
        store: Store,
        *,
        health: Health | None = None,
        recent_inbound: RecentInbound | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._health = health
        self._recent_inbound = recent_inbound
        self._clock = clock

    async def snapshot(self) -> StatusSnapshot:
        report = await self._health.check() if self._health is not None else None
        counts, jobs, inbound = await asyncio.to_thread(self._read)
        return StatusSnapshot(self._clock(), counts, jobs, inbound, report)

    def _read(
        self,
    ) -> tuple[Mapping[JobState, int], list[Job], Sequence[InboundFax] | None]:
        counts = self._store.count_by_state()
        jobs = self._store.recent_jobs(RECENT_JOBS)
        recent_inbound = self._recent_inbound
        inbound = None if recent_inbound is None else recent_inbound(RECENT_INBOUND)
        return counts, jobs, inbound

    async def render(self) -> str:
        return render_page(await self.snapshot())


# ---------------------------------------------------------------------- rendering (pure)


def _text(value: object) -> str:
    """A value as escaped text; nothing shows as a dash."""
    if value is None or value == "":
        return "–"
    return html.escape(str(value), quote=True)


def _time(value: datetime | None) -> str:
    """Server time for people, the exact UTC moment in the attribute."""
    if value is None:
        return "–"
    exact = html.escape(value.astimezone(UTC).isoformat(timespec="seconds"))
    shown = html.escape(value.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    return f'<time datetime="{exact}">{shown}</time>'


def _row(cells: Iterable[str], attributes: str = "") -> str:
    return f"<tr{attributes}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _table(table_id: str, headings: Sequence[str], rows: Sequence[str], empty: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    if not rows:
        body = f'<tr><td colspan="{len(headings)}" class="none">{html.escape(empty)}</td></tr>'
    else:
        body = "\n".join(rows)
    return (
        f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody>\n</table>"
    )


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
    head = "".join(f"<th>{_text(state.value)}</th>" for state in JobState)
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


def _jobs_section(jobs: Sequence[Job]) -> str:
    rows = [
        _row(
            (
                _text(job.id),
                f'<span class="state {_text(job.state.value)}">{_text(job.state.value)}</span>',
                _text(job.to_number),
                _text(job.attempt),
                _text(job.pages),
                _time(job.updated_at),
                _text(job.reason),
            ),
            f' data-job="{_text(job.id)}"',
        )
        for job in jobs
    ]
    headings = ("job", "state", "number", "tries", "pages", "updated", "reason")
    table = _table("jobs", headings, rows, "no faxes yet")
    return f"<section><h2>Last {RECENT_JOBS} faxes out</h2>\n{table}</section>"


def _inbound_section(inbound: Sequence[InboundFax] | None) -> str:
    if inbound is None:
        return (
            '<section><h2>Faxes in</h2><p id="inbound" class="none">'
            "This faxgate keeps no inbound faxes.</p></section>"
        )
    rows = [
        _row(
            (
                _text(fax.id),
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
    table = _table("inbound", headings, rows, "no faxes received yet")
    return f"<section><h2>Last {RECENT_INBOUND} faxes in</h2>\n{table}</section>"


_STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0; }
h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
header p { color: #666; margin: .2em 0; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td:last-child { max-width: 40em; overflow-wrap: anywhere; }
td.none, p.none { color: #777; font-style: italic; }
td.alert { background: #fde2e1; font-weight: bold; }
#health { padding: .2em .8em; border-radius: 4px; }
#health h2 { margin: .4em 0; }
#health.ok { background: #e3f6e5; }
#health.unhealthy { background: #fde2e1; }
.state.sent { color: #17692b; }
.state.failed, .state.uncertain { color: #a8231d; font-weight: bold; }
.state.cancelled { color: #777; }
"""


def render_page(snapshot: StatusSnapshot) -> str:
    """The whole page; every value is escaped."""
    zone = html.escape(snapshot.taken_at.astimezone().tzname() or "server time")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS:d}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>faxgate status</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>faxgate</h1>
<p>As of {_time(snapshot.taken_at)} ({zone}); this page refreshes every {REFRESH_SECONDS:d} s.</p>
</header>
{_health_section(snapshot.health)}
{_queue_section(snapshot.counts)}
{_jobs_section(snapshot.jobs)}
{_inbound_section(snapshot.inbound)}
</body>
</html>
"""
