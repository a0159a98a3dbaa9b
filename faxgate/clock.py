"""The time, in UTC: one place for everyone who needs "now" (the store, reports, loops)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


def spoken_duration(value: timedelta) -> str:
    """A duration as people say it: 45 s, 3 min, 2 h 5 min."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def iso_utc(value: datetime) -> str:
    """A moment as files and JSON show it: 2024-05-01T10:15:00Z."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
