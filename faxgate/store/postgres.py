"""The store on PostgreSQL: several faxgate instances sharing one database.

psycopg 3's blocking API with its connection pool: the store is a blocking API that the
daemon calls from worker threads, so a synchronous driver fits it as SQLite's does, and the
pool replaces a connection the server dropped (a restart, a failover) before it is used.
Imported only for a `postgresql://` store: the driver costs every command that never uses it.

Its schema's steps are in pg_migrations.py.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import ConnectionPool

from faxgate.clock import spoken_duration
from faxgate.store.db import WAKEUP_CHANNEL
from faxgate.store.dialect import POSTGRES, Connection, to_pyformat
from faxgate.store.pg_migrations import apply_pg_migrations, pg_schema_version
from faxgate.store.probe import STORE_LOCK_WAIT, StoreNotWritable, StoreProbe
from faxgate.store.values import StoreError

CONNECT_TIMEOUT: Final = 10  # seconds
# A check before a start, or by `faxgate doctor`: a server that does not answer soon is named.
CHECK_TIMEOUT: Final = 5  # seconds

PgConnection = psycopg.Connection[dict[str, Any]]


def without_password(url: str) -> str:
    """The URL as it may be shown: any password in it replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


# A JSON escape of NUL (after an even number of backslashes, so not an escaped "\u0000").
_JSON_NUL: Final = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """Parameters as PostgreSQL can keep them. Its text cannot hold NUL, which SQLite's
    can, and its JSON functions refuse the escape `\u0000` anywhere in a document: either
    becomes U+FFFD, as bytes that cannot be read are elsewhere."""
    return tuple(_storable(value) if isinstance(value, str) else value for value in parameters)


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if "\\u0000" in text:
        text = _JSON_NUL.sub(r"\1\\ufffd", text)
    return text


class _Translated:
    """A psycopg connection that takes the store's SQL: `?` placeholders, sqlite3's call."""

    def __init__(self, conn: PgConnection) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Any:
        return self._conn.execute(to_pyformat(sql).encode(), storable(parameters))


class _Listener:
    """LISTEN on a dedicated connection (never a pooled one: a pooler would hand the
    session to someone else); made again when the server drops it."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._conn: PgConnection | None = None
        self._connect()

    def _connect(self) -> PgConnection:
        conn: PgConnection = psycopg.connect(
            self._url, connect_timeout=CONNECT_TIMEOUT, **self._options
        )
        conn.execute(f"LISTEN {WAKEUP_CHANNEL}".encode())
        self._conn = conn
        return conn

    def wait(self, timeout: float) -> set[str]:
        if self._conn is None:
            try:
                self._connect()
            except psycopg.OperationalError:
                # Still no server: wait as a poll would, then let the caller look.
                threading.Event().wait(timeout)
                return {"jobs", "outbox"}
        assert self._conn is not None
        conn = self._conn
        try:
            came = {n.payload for n in conn.notifies(timeout=timeout, stop_after=1)}
            # And whatever else is already there, without waiting again.
            came |= {n.payload for n in conn.notifies(timeout=0.0)}
        except psycopg.OperationalError:
            # The connection went away: what was announced meanwhile is lost, so say
            # there may be work of every kind. Listening again first, so that nothing
            # announced after the caller's look is missed.
            self.close()
            with contextlib.suppress(psycopg.OperationalError):
                self._connect()
            return {"jobs", "outbox"}
        return came

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresBackend:
    """A pool of connections to one PostgreSQL database."""

    dialect = POSTGRES

    def __init__(
        self,
        pool: ConnectionPool[PgConnection],
        location: str,
        url: str = "",
        options: dict[str, Any] | None = None,
    ) -> None:
        self._pool = pool
        self.location = location
        self._url = url
        self._options = options or {}

    @classmethod
    def open(cls, url: str, *, password: str | None, busy_timeout: float, pool_size: int) -> Self:
        location = without_password(url)
        options: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        if password:
            options["password"] = password
        lock_wait = f"{max(int(busy_timeout * 1000), 1):d}ms"

        def configure(conn: PgConnection) -> None:
            conn.execute("SET TIME ZONE 'UTC'")
            # As SQLite's busy timeout: a writer waits this long for another's row locks.
            conn.execute(f"SET lock_timeout = '{lock_wait}'".encode())

        # One connection first, to bring the schema up to date and to name what is wrong
        # (no server, a wrong password) in the driver's words, not as a pool's timeout.
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, **options) as first:
                configure(first)
                apply_pg_migrations(first)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the store {location}: {exc}") from exc
        pool: ConnectionPool[PgConnection] = ConnectionPool(
            url,
            kwargs={**options, "connect_timeout": CONNECT_TIMEOUT},
            min_size=1,
            max_size=max(pool_size, 2),
            configure=configure,
            check=ConnectionPool.check_connection,
            open=False,
            name="faxgate-store",
        )
        pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        return cls(pool, location, url, options)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self._pool.connection() as conn:
            conn.execute("BEGIN")
            try:
                yield _Translated(conn)
                # COMMIT of a failed transaction rolls back without a word: never let it.
                if conn.info.transaction_status == TransactionStatus.INERROR:
                    raise StoreError("the transaction failed and was rolled back")
                conn.execute("COMMIT")
            except BaseException:
                if conn.info.transaction_status in (
                    TransactionStatus.INTRANS,
                    TransactionStatus.INERROR,
                ):
                    conn.execute("ROLLBACK")
                raise

    def query(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._pool.connection() as conn:
            return conn.execute(to_pyformat(sql).encode(), storable(params)).fetchall()

    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            return pg_schema_version(conn)

    def must_retry(self, error: BaseException) -> bool:
        return isinstance(
            error, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )

    def listen(self) -> _Listener:
        return _Listener(self._url, self._options)

    def probe(self) -> PostgresProbe:
        password = self._options.get("password")
        return PostgresProbe(self._url, str(password) if password else None)

    def close(self) -> None:
        self._pool.close()


class PostgresProbe(StoreProbe):
    """The health probe's look at a PostgreSQL store: a connection of its own for each
    look, as the SQLite probe opens the file anew, so it sees the database as another
    instance would. A database that takes no writes (a standby after a failover, say)
    is reported as such."""

    dialect = POSTGRES
    errors = (psycopg.Error,)

    def __init__(self, url: str, password: str | None = None) -> None:
        self.url = url
        self.location = without_password(url)
        self._password = password

    def _open(self, lock_wait: timedelta) -> psycopg.Connection[Any]:
        options: dict[str, Any] = {"autocommit": True, "row_factory": tuple_row}
        if self._password:
            options["password"] = self._password
        conn: psycopg.Connection[Any] = psycopg.connect(
            self.url, connect_timeout=CONNECT_TIMEOUT, **options
        )
        lock_ms = max(int(lock_wait.total_seconds() * 1000), 1)
        conn.execute(f"SET lock_timeout = '{lock_ms:d}ms'".encode())
        conn.execute("SET TIME ZONE 'UTC'")
        return conn

    def check_writable(self, lock_wait: timedelta = STORE_LOCK_WAIT) -> None:
        """Commit one real write (the schema's version written back as it is), or raise
        StoreNotWritable in plain words."""
        try:
            conn = self._open(lock_wait)
        except psycopg.Error as exc:
            raise StoreNotWritable(f"the store {self.location} cannot be reached: {exc}") from None
        try:
            with conn.transaction():
                conn.execute("UPDATE faxgate_schema SET version = version")
        except psycopg.errors.LockNotAvailable:
            raise StoreNotWritable(
                "the store is locked: another writer has held it for more than"
                f" {spoken_duration(lock_wait)}"
            ) from None
        except psycopg.errors.ReadOnlySqlTransaction:
            raise StoreNotWritable(
                f"the store {self.location} takes no writes: it is a read-only database"
                " (a standby?)"
            ) from None
        except psycopg.Error as exc:
            raise StoreNotWritable(f"the store cannot be written: {exc}") from None
        finally:
            conn.close()

    def _rows(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._open(STORE_LOCK_WAIT) as conn:
            return conn.execute(to_pyformat(sql).encode(), storable(params)).fetchall()
