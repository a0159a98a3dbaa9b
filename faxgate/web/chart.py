"""The last 24 hours as a small bar chart: faxes sent, failed and received per hour, as
inline SVG drawn by the server (no script), with a title and a description for screen
readers and a text label on every bar group's hour."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from faxgate.store.views import HourCounts
from faxgate.web.markup import attr

__all__ = ["HOURS", "HourBars", "chart_start", "hour_bars", "render_chart"]

HOURS: Final = 24
_SERIES: Final = (("sent", "sent"), ("failed", "failed"), ("received", "received"))
_WIDTH: Final = 720
_HEIGHT: Final = 200
_LEFT: Final = 34  # room for the scale's numbers
_TOP: Final = 26  # room for the legend
_BOTTOM: Final = 22  # room for the hours
_PLOT_HEIGHT: Final = _HEIGHT - _TOP - _BOTTOM


@dataclass(frozen=True, slots=True)
class HourBars:
    start: datetime  # the hour, UTC
    sent: int
    failed: int
    received: int


def chart_start(now: datetime) -> datetime:
    """The first hour the chart shows: the current hour and the 23 before it."""
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=HOURS - 1)


def hour_bars(counts: HourCounts, now: datetime) -> list[HourBars]:
    """One entry per hour of the last 24, oldest first, zeros where nothing happened."""
    start = chart_start(now)
    bars = []
    for n in range(HOURS):
        hour = start + timedelta(hours=n)
        key = hour.strftime("%Y-%m-%dT%H")
        bars.append(
            HourBars(
                hour,
                counts.sent.get(key, 0),
                counts.failed.get(key, 0),
                counts.received.get(key, 0),
            )
        )
    return bars


def _scale_top(highest: int) -> int:
    """A round number at or above the highest bar, so the scale reads well."""
    for step in (1, 2, 5, 10, 20, 25, 50):
        if highest <= step * 4:
            return step * 4
    magnitude = 100
    while highest > magnitude * 4:
        magnitude *= 10
    return magnitude * 4


def _label(hour: datetime) -> str:
    return hour.astimezone().strftime("%H:%M")


def render_chart(bars: Sequence[HourBars]) -> str:
    totals: Mapping[str, int] = {
        "sent": sum(b.sent for b in bars),
        "failed": sum(b.failed for b in bars),
        "received": sum(b.received for b in bars),
    }
    top = _scale_top(max([1, *(max(b.sent, b.failed, b.received) for b in bars)]))
    group = (_WIDTH - _LEFT) / max(1, len(bars))
    bar = (group - 4) / 3
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_HEIGHT}"'
        f' viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Faxes per hour over the last 24 hours</title>',
        f'<desc id="chart-desc">In the last 24 hours: {totals["sent"]} sent,'
        f" {totals['failed']} failed, {totals['received']} received.</desc>",
    ]
    # The scale: a line and a number at zero, half and the top.
    for mark in (0, top // 2, top):
        y = _TOP + _PLOT_HEIGHT - mark * _PLOT_HEIGHT / top
        parts.append(
            f'<line x1="{_LEFT}" x2="{_WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{mark:d}</text>'
        )
    # The legend, in words.
    x = _LEFT
    for key, label in _SERIES:
        parts.append(
            f'<rect class="bar-{key}" x="{x}" y="6" width="10" height="10"/>'
            f'<text x="{x + 14}" y="15">{label} ({totals[key]:d})</text>'
        )
        x += 110
    for n, hour in enumerate(bars):
        left = _LEFT + n * group + 2
        label = attr(_label(hour.start))
        parts.append(f'<g data-hour="{attr(hour.start.strftime("%Y-%m-%dT%H"))}">')
        for i, (key, words) in enumerate(_SERIES):
            value: int = getattr(hour, key)
            height = value * _PLOT_HEIGHT / top
            y = _TOP + _PLOT_HEIGHT - height
            parts.append(
                f'<rect class="bar-{key}" data-count="{value:d}" x="{left + i * bar:.1f}"'
                f' y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}">'
                f"<title>{label}: {value:d} {words}</title></rect>"
            )
        if n % 3 == 0:
            parts.append(
                f'<text x="{left + 1.5 * bar:.1f}" y="{_HEIGHT - 6}"'
                f' text-anchor="middle">{label}</text>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)
