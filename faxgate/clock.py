"""The time, in UTC: one place for everyone who needs "now" (the store, reports, loops)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

# Unix time in milliseconds passes this around 1973; in seconds, not before year 5000.
MILLISECONDS_ABOVE = 100_000_000_000


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


def provider_time(value: Any) -> Any:
    """A moment as a provider's API writes it, read tolerantly, always UTC-aware: Unix
    seconds (or milliseconds) as a number or a numeric string, or ISO 8601. Blank text is
    None; anything else is left for the caller's validation to refuse."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"timestamp out of range: {value}")
        seconds = value / 1000 if value > MILLISECONDS_ABOVE else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"timestamp out of range: {value}") from exc
    return value
