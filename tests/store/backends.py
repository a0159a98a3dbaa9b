"""The store's tests on both backends: where a store is, a plain connection beside it as
another program would open one, and the few things each backend does its own way."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faxgate.store import MIGRATIONS, Store, apply_migrations, schema_version
from faxgate.store.db import SqliteBackend
from faxgate.store.dialect import to_pyformat
from faxgate.store.pg_migrations import PG_MIGRATIONS, apply_pg_migrations

# A store's place: an SQLite file, or a postgresql:// URL.
Location = Path | str


# Every test of the store runs on both backends (the `backend` fixture in conftest.py),
# unless it names one.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])
postgres_only = pytest.mark.parametrize("backend", ["postgresql"])


def open_store(location: Location, **options: Any) -> Store:
    if isinstance(location, Path):
        return Store.open(location, **options)
    return Store.open_url(location, **options)


class Raw:
    """A plain connection beside the store's, in autocommit, taking `?` placeholders."""

    def __init__(self, conn: sqlite3.Connection | psycopg.Connection[Any]) -> None:
        self.conn = conn

    @property
    def postgres(self) -> bool:
        return isinstance(self.conn, psycopg.Connection)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if isinstance(self.conn, psycopg.Connection):
            return self.conn.execute(to_pyformat(sql).encode(), tuple(params))
        return self.conn.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]


@contextmanager
def raw(location: Location) -> Iterator[Raw]:
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(location, isolation_level=None)) as conn:
            yield Raw(conn)
    else:
        with psycopg.connect(location, autocommit=True) as pg:
            yield Raw(pg)


def migrations_of(location: Location) -> tuple[tuple[str, ...], ...]:
    return MIGRATIONS if isinstance(location, Path) else PG_MIGRATIONS


def migrate(conn: Raw, migrations: Sequence[Sequence[str]]) -> int:
    if isinstance(conn.conn, psycopg.Connection):
        return apply_pg_migrations(conn.conn, migrations)
    return apply_migrations(conn.conn, migrations)


def version(conn: Raw) -> int:
    if conn.postgres:
        return int(conn.one("SELECT version FROM faxgate_schema"))
    assert isinstance(conn.conn, sqlite3.Connection)
    return schema_version(conn.conn)


def set_version(conn: Raw, number: int) -> None:
    if conn.postgres:
        conn.execute("UPDATE faxgate_schema SET version = ?", (number,))
    else:
        conn.execute(f"PRAGMA user_version = {number:d}")


def table_exists(conn: Raw, name: str) -> bool:
    if conn.postgres:
        return bool(conn.one("SELECT to_regclass(?) IS NOT NULL", (name,)))
    found = conn.one("SELECT count(*) FROM sqlite_master WHERE name = ?", (name,))
    return bool(found)


def add_failing_trigger(conn: Raw, table: str, message: str) -> None:
    """Every insert into `table` fails with `message`."""
    if conn.postgres:
        conn.execute(
            f"CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql"
            f" AS $$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        )
        conn.execute(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION fail_{table}()"
        )
    else:
        conn.execute(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
            f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def drop_failing_trigger(conn: Raw, table: str) -> None:
    suffix = f" ON {table}" if conn.postgres else ""
    conn.execute(f"DROP TRIGGER fail_{table}{suffix}")


def sqlite_conn(store: Store) -> sqlite3.Connection:
    """The SQLite store's writer connection."""
    backend = store._backend
    assert isinstance(backend, SqliteBackend)
    return backend.conn
