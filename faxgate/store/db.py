"""The job store's connections: one SQLite file, or a PostgreSQL database.

The daemon and the CLI (and, on PostgreSQL, other instances) use the same store at once.
On SQLite: WAL (readers never block the writer), a busy timeout (writers wait for each
other instead of failing), and every write in one `BEGIN IMMEDIATE` transaction (take the
write lock before reading what the write depends on); synchronous=FULL: a commit that
returned survives a power cut. On PostgreSQL (postgres.py): a pool of connections, each
write a transaction that locks the rows it reads before changing them.

Times are kept as UTC (fixed-width ISO-8601 text on SQLite, timestamptz on PostgreSQL);
the API takes and returns aware datetimes. Blocking API: the daemon calls it from worker
threads. Writes are made one at a time under a lock; reads never wait behind a commit.
State changes are committed in groups: the changes asked for while a commit runs share the
next one (one fsync for many), and each caller returns only once its own change is durable.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from faxgate.clock import utc_now
from faxgate.store.dialect import SQLITE, Connection, Dialect
from faxgate.store.migrations import apply_migrations, schema_version, write_transaction
from faxgate.store.probe import StoreProbe
from faxgate.store.rows import time_to_db
from faxgate.store.values import DEFAULT_BUSY_TIMEOUT, StoreError

_T = TypeVar("_T")

# Where the store tells other instances there is work: payload "jobs" (jobs to send) or
# "outbox" (notifications to deliver).
WAKEUP_CHANNEL = "faxgate_work"


class Wakeups(Protocol):
    """Word from other instances that there is work, on a connection of its own."""

    def wait(self, timeout: float) -> set[str]:
        """Block until word comes or `timeout` seconds pass; what came ("jobs", "outbox")."""

    def close(self) -> None: ...


class _NoWakeups:
    """SQLite: no other instance to hear from; the waiter polls, as it always has."""

    def __init__(self) -> None:
        self._closed = threading.Event()

    def wait(self, timeout: float) -> set[str]:
        self._closed.wait(timeout)
        return set()

    def close(self) -> None:
        self._closed.set()


class Backend(Protocol):
    """One kind of database under the store: its transactions, its reads, its dialect."""

    dialect: Dialect
    location: str  # where it is, for messages (a file's path, a URL without password)

    def transaction(self) -> AbstractContextManager[Connection]:
        """One write transaction; called by one thread at a time."""

    def query(self, sql: str, params: Sequence[object]) -> list[Any]: ...

    def schema_version(self) -> int: ...

    def must_retry(self, error: BaseException) -> bool:
        """Whether `error` aborted the whole transaction for a reason that passes (another
        instance's transaction chose the same rows): run it again from the start."""

    def listen(self) -> Wakeups: ...

    def probe(self) -> StoreProbe:
        """The health probe's look at this database, on connections of its own."""

    def close(self) -> None: ...


class SqliteBackend:
    """One SQLite file: a writer connection, and a reader of its own."""

    dialect = SQLITE

    def __init__(self, conn: sqlite3.Connection, reader: sqlite3.Connection, path: Path):
        self.conn = conn
        self.reader = reader
        self._read_lock = threading.Lock()
        self.path = path
        self.location = str(path)

    @classmethod
    def open(cls, path: Path, busy_timeout: float) -> Self:
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
        return cls(conn, reader, path)

    def transaction(self) -> AbstractContextManager[Connection]:
        return write_transaction(self.conn)

    def query(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._read_lock:
            return self.reader.execute(sql, params).fetchall()

    def schema_version(self) -> int:
        with self._read_lock:
            return schema_version(self.reader)

    def must_retry(self, error: BaseException) -> bool:
        return False  # one writer at a time: no deadlock between writers

    def listen(self) -> Wakeups:
        return _NoWakeups()

    def probe(self) -> StoreProbe:
        return StoreProbe(self.path)

    def close(self) -> None:
        with self._read_lock:
            self.conn.close()
            self.reader.close()


# How often a group whose transaction was chosen to break a deadlock is run again.
GROUP_TRIES = 5


class _TryAgain(Exception):
    """The group's transaction must be run again from the start."""


@dataclass(slots=True)
class _Change:
    """One caller's state change waiting for a group commit."""

    body: Callable[[Connection], Any]
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class Database:
    """The store's database: writes one at a time under a lock, group commits, reads of
    their own. The table families below share it."""

    def __init__(self, backend: Backend, clock: Callable[[], datetime]):
        self._backend = backend
        self._dialect = backend.dialect
        self._lock = threading.RLock()
        self._waiting: list[_Change] = []
        self._waiting_lock = threading.Lock()
        self._clock = clock
        self.location = backend.location

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> Self:
        """The SQLite store in `path`, made and brought up to date as needed."""
        return cls(SqliteBackend.open(path, busy_timeout), clock)

    @classmethod
    def open_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
        pool_size: int = 8,
    ) -> Self:
        """The PostgreSQL store at `url` (postgresql://...), brought up to date as needed."""
        # Imported here: the driver costs every command that never uses it.
        from faxgate.store.postgres import PostgresBackend

        backend = PostgresBackend.open(
            url, password=password, busy_timeout=busy_timeout, pool_size=pool_size
        )
        return cls(backend, clock)

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def path(self) -> Path:
        """The SQLite file (a PostgreSQL store has none)."""
        if not isinstance(self._backend, SqliteBackend):
            raise StoreError(f"the store {self.location} is not a file")
        return self._backend.path

    def close(self) -> None:
        with self._lock:
            self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def schema_version(self) -> int:
        """The version of the schema (the number of migrations applied)."""
        return self._backend.schema_version()

    def _sqlite(self) -> SqliteBackend:
        if not isinstance(self._backend, SqliteBackend):
            raise StoreError(f"the store {self.location} is not an SQLite file")
        return self._backend

    def pragmas(self) -> dict[str, object]:
        """The settings an SQLite store runs with, for `faxgate status` and tests."""
        names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "user_version")
        conn = self._sqlite().conn
        with self._lock:
            return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    def integrity_check(self) -> list[str]:
        """SQLite's own check of the file: ["ok"] when sound."""
        self._sqlite()
        return [row[0] for row in self._query("PRAGMA integrity_check")]

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction, holding the write lock from its first statement."""
        with self._lock, self._backend.transaction() as conn:
            yield conn

    def _grouped(self, body: Callable[[Connection], _T]) -> _T:
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
        try:
            for tries_left in reversed(range(GROUP_TRIES)):
                try:
                    self._try_group(batch, last=tries_left == 0)
                    return
                except _TryAgain:
                    continue
        except BaseException as error:
            for change in batch:  # nothing of the group was committed
                change.value, change.error = None, error
        finally:
            for change in batch:
                change.done = True

    def _try_group(self, batch: list[_Change], *, last: bool) -> None:
        """One try at the group's transaction. On PostgreSQL, a change that breaks a
        deadlock with another instance undoes the whole group, not only itself: the
        locks its earlier changes hold are what the other transaction waits for."""
        with self._backend.transaction() as conn:
            for change in batch:
                change.value, change.error = None, None
                conn.execute("SAVEPOINT change")
                try:
                    change.value = change.body(conn)
                except Exception as error:
                    if not last and self._backend.must_retry(error):
                        raise _TryAgain from error
                    conn.execute("ROLLBACK TO SAVEPOINT change")
                    change.error = error
                conn.execute("RELEASE SAVEPOINT change")

    def probe(self) -> StoreProbe:
        """The health probe's look at this store (/healthz, the queue's age in /metrics):
        its own connection for each look, as another instance would see the database."""
        return self._backend.probe()

    def wakeups(self) -> Wakeups:
        """Word from other instances sharing the store when they leave work (on
        PostgreSQL, LISTEN on a connection of its own); polling stays the fallback."""
        return self._backend.listen()

    def _announce(self, conn: Connection, what: str) -> None:
        """Tell the other instances, once this transaction commits, there is `what`."""
        if self._dialect.announce:
            conn.execute(self._dialect.announce, (WAKEUP_CHANNEL, what))

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        return self._backend.query(sql, params)

    def _now(self, now: datetime | None) -> str:
        return time_to_db(self._clock() if now is None else now)
