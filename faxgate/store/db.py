"""The job store: jobs, their documents, every state change and the outbox, in SQLite.

The daemon and the CLI open the same file at once, so: WAL (readers never block the
writer), a busy timeout (writers wait for each other instead of failing), and every
write in one `BEGIN IMMEDIATE` transaction (take the write lock before reading what the
write depends on). synchronous=FULL: a commit that returned survives a power cut.

Times are stored as fixed-width ISO-8601 UTC text ("2024-05-01T10:15:00.000000Z"), so
they read well in the sqlite3 shell and compare correctly as text; the API takes and
returns aware datetimes. Blocking API: the daemon calls it from worker threads. Writes
share one connection under a lock; reads have a connection of their own, so they never
wait behind a commit's fsync. State changes are committed in groups: the changes asked
for while a commit runs share the next one (one fsync for many), and each caller returns
only once its own change is durable.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from faxgate.clock import utc_now
from faxgate.store.migrations import apply_migrations
from faxgate.store.rows import time_to_db
from faxgate.store.values import DEFAULT_BUSY_TIMEOUT, StoreError

_T = TypeVar("_T")


@dataclass(slots=True)
class _Change:
    """One caller's state change waiting for a group commit."""

    body: Callable[[sqlite3.Connection], Any]
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class Database:
    """One SQLite file: a writer connection under a lock, a reader of its own, group
    commits. The table families below share it."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        clock: Callable[[], datetime],
        reader: sqlite3.Connection | None = None,
    ):
        self._conn = conn
        self._lock = threading.RLock()
        self._reader = reader or conn
        self._read_lock = threading.Lock() if reader is not None else self._lock
        self._waiting: list[_Change] = []
        self._waiting_lock = threading.Lock()
        self._clock = clock
        self.path = path

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> Self:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun explicitly, never behind our back.
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch {path} to WAL (journal mode is {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn)
            reader = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except BaseException:
            conn.close()
            raise
        reader.row_factory = sqlite3.Row
        reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        return cls(conn, path, clock, reader)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._conn.close()
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def pragmas(self) -> dict[str, object]:
        """The settings this connection runs with, for `faxgate status` and tests."""
        names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "user_version")
        with self._lock:
            return {name: self._conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    def integrity_check(self) -> list[str]:
        """SQLite's own check of the file: ["ok"] when sound."""
        return [row[0] for row in self._query("PRAGMA integrity_check")]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _grouped(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `body` in a transaction shared with the changes queued meanwhile.

        Whoever holds the write lock commits every change waiting at that moment, each in
        a savepoint of its own: a body that raises undoes only itself. One that finds its
        change committed by an earlier holder just returns its result.
        """
        change = _Change(body)
        with self._waiting_lock:
            self._waiting.append(change)
        with self._lock:
            if not change.done:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._commit_group(batch)
        if change.error is not None:
            raise change.error
        return change.value  # type: ignore[no-any-return]

    def _commit_group(self, batch: list[_Change]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for change in batch:
                conn.execute("SAVEPOINT change")
                try:
                    change.value = change.body(conn)
                except Exception as error:
                    conn.execute("ROLLBACK TO change")
                    change.error = error
                conn.execute("RELEASE change")
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for change in batch:  # nothing of the group was committed
                change.value, change.error = None, error
        finally:
            for change in batch:
                change.done = True

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def _now(self, now: datetime | None) -> str:
        return time_to_db(self._clock() if now is None else now)
