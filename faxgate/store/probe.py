"""The health probe's look at the store: a real write committed, the oldest due job,
the callbacks overdue. Its own connection for each look, so it sees the file as any writer
would and never waits behind the daemon's shared connection."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Final

from faxgate.clock import spoken_duration, utc_now
from faxgate.domain.jobs import JobState
from faxgate.store.dialect import SQLITE, Dialect
from faxgate.store.migrations import write_transaction
from faxgate.store.rows import time_from_db, time_to_db
from faxgate.store.values import DEFAULT_BUSY_TIMEOUT

log = logging.getLogger("faxgate.health")

# The daemon's own writers give up after waiting this long for the lock; so does the probe.
STORE_LOCK_WAIT: Final = timedelta(seconds=DEFAULT_BUSY_TIMEOUT)
# A fax presumed sent is watched for its callback until this long ago: the provider
# stops retrying a callback after about 34 hours.
CALLBACK_WATCH: Final = timedelta(hours=48)
_OVERDUE_SHOWN: Final = 10


class StoreNotWritable(Exception):
    """The probe could not commit a write; the message says why in plain words."""


@dataclass(frozen=True, slots=True)
class DueJob:
    """The queued job that has been due the longest, and how many are due."""

    id: str
    due_since: datetime
    reason: str | None
    due: int

    def waited(self, now: datetime) -> timedelta:
        return max(now - self.due_since, timedelta(0))


class StoreProbe:
    """Looks at the store file through a connection of its own, opened for each look.

    A connection of its own, so that the probe sees the file as any writer would, and
    never waits behind the daemon's shared connection. Blocking: call it from a thread.
    """

    dialect: ClassVar[Dialect] = SQLITE
    # What a look that cannot read the store raises (health reports it, never crashes).
    errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self, lock_wait: timedelta) -> sqlite3.Connection:
        # mode=rw: a store that has gone missing is a problem, not a new empty file.
        uri = f"{self.path.resolve().as_uri()}?mode=rw"
        seconds = lock_wait.total_seconds()  # sqlite3's timeout is the busy timeout
        conn = sqlite3.connect(uri, uri=True, timeout=seconds, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous = FULL")  # as the store commits
        except BaseException:
            conn.close()
            raise
        return conn

    def check_writable(self, lock_wait: timedelta = STORE_LOCK_WAIT) -> None:
        """Commit one real write, or raise StoreNotWritable.

        BEGIN IMMEDIATE alone succeeds even on a read-only file, and a rolled-back write
        never reaches the disk. So the probe writes the schema version back with its own
        value, under the write lock: a no-op for every reader, but one page committed to
        the WAL and synced, as any job's change would be.
        """
        try:
            conn = self._connect(lock_wait)
        except sqlite3.Error as exc:
            raise StoreNotWritable(f"the store {self.path} cannot be opened: {exc}") from None
        try:
            with write_transaction(conn):
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                conn.execute(f"PRAGMA user_version = {version:d}")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreNotWritable(
                    "the store is locked: another writer has held it for more than"
                    f" {spoken_duration(lock_wait)}"
                ) from None
            raise StoreNotWritable(f"the store cannot be written: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreNotWritable(f"the store cannot be written: {exc}") from None
        finally:
            conn.close()

    def oldest_due(self, now: datetime) -> DueJob | None:
        """The queued job that has been due the longest, or None when none is due.

        A job is due since it was last queued (`updated_at`), or since its `not_before`
        when that came later. Times are the store's fixed-width UTC text, which compares
        as it sorts.
        """
        rows = self._rows(
            f"SELECT id, {self.dialect.greatest}(updated_at, coalesce(not_before, updated_at))"  # noqa: S608
            " AS due_since, reason, count(*) OVER () AS due"
            " FROM jobs WHERE state = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY due_since, id LIMIT 1",
            (JobState.QUEUED.value, time_to_db(now)),
        )
        if not rows:
            return None
        row = rows[0]
        return DueJob(id=row[0], due_since=time_from_db(row[1]), reason=row[2], due=int(row[3]))

    def _rows(self, sql: str, params: Sequence[object]) -> list[Any]:
        """One read, on a connection of its own; rows by position."""
        conn = self._connect(STORE_LOCK_WAIT)  # WAL: readers wait only on a checkpoint
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def overdue_callbacks(self, now: datetime, after: timedelta) -> OverdueCallbacks:
        """Faxes that ended presumed sent (no callback) between `after` and CALLBACK_WATCH
        ago, oldest first: the callbacks that should have come and did not."""
        rows = self._rows(
            "SELECT id, count(*) OVER () FROM jobs WHERE state = ?"
            " AND finished_at <= ? AND finished_at >= ? ORDER BY finished_at, id LIMIT ?",
            (
                JobState.PRESUMED_SENT.value,
                time_to_db(now - after),
                time_to_db(now - CALLBACK_WATCH),
                _OVERDUE_SHOWN,
            ),
        )
        return OverdueCallbacks(
            count=int(rows[0][1]) if rows else 0, job_ids=tuple(row[0] for row in rows)
        )

    def oldest_due_seconds(self) -> float:
        """For /metrics: seconds the oldest due job has waited (0: none is due; NaN: the
        store cannot be read, which /healthz explains; the other metrics still go out)."""
        now = utc_now()
        try:
            oldest = self.oldest_due(now)
        except self.errors as exc:
            log.debug("queue age not read error=%s", exc)
            return math.nan
        return 0.0 if oldest is None else oldest.waited(now).total_seconds()


@dataclass(frozen=True, slots=True)
class OverdueCallbacks:
    count: int
    job_ids: tuple[str, ...]  # the oldest few
