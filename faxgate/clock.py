"""The time, in UTC: one place for everyone who needs "now" (the store, reports, loops)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
