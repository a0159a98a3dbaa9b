"""What the store's tests make: jobs, spooled files, a clock they move by hand."""

from __future__ import annotations

import atexit
import hashlib
import itertools
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewDocument, NewJob
from faxgate.store.spool import SpooledFile
from tests.store.backends import Location, raw

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
S = JobState


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


# Where `spooled` writes: one folder for the test run (on PostgreSQL the store reads a
# job's files to keep their bytes, so they must be there).
_SPOOL = Path(tempfile.mkdtemp(prefix="faxgate-store-tests-"))
atexit.register(shutil.rmtree, _SPOOL, ignore_errors=True)


def spooled(name: str, data: bytes = b"%PDF-1.4\n") -> SpooledFile:
    """A spooled file with `data`, written under a name of its content's own (so that two
    tests' files of one name never meet)."""
    digest = hashlib.sha256(data).hexdigest()
    path = _SPOOL / f"{digest[:16]}-{name}"
    if not path.exists():
        path.write_bytes(data)
    return SpooledFile(path, len(data), digest)


_numbers = itertools.count(1000)


def new_job(number: str | None = None, **kwargs: object) -> NewJob:
    """A job to `number`, or to a number of its own (one call at a time per number would
    hold back jobs that share one)."""
    values: dict[str, object] = {
        "to_number": number or f"+1415555{next(_numbers) % 10000:04d}",
        "intake": Intake.SMTP,
        "documents": [NewDocument("report.pdf", spooled("a.pdf"), "application/pdf")],
    }
    values.update(kwargs)
    return NewJob(**values)  # type: ignore[arg-type]


def table_counts(location: Location) -> dict[str, int]:
    with raw(location) as conn:
        return {
            table: conn.one(f"SELECT count(*) FROM {table}")  # noqa: S608
            for table in ("jobs", "documents", "events", "outbox")
        }


# The errors each backend's driver raises, for the tests that provoke them.
DATABASE_ERRORS = (sqlite3.Error, psycopg.Error)
