"""Opening a store and its schema: migrations on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from faxgate.store import MIGRATIONS, SchemaTooNew, Store
from faxgate.store.pg_migrations import PG_MIGRATIONS
from tests.store import backends
from tests.store.backends import Location
from tests.store.making import DATABASE_ERRORS, FakeClock, new_job


@backends.sqlite_only
def test_open_creates_parent_directories_and_schema(db_path: Path, store: Store) -> None:
    assert db_path.is_file()
    assert store.pragmas()["user_version"] == len(MIGRATIONS) >= 1
    with backends.raw(db_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"jobs", "documents", "events", "outbox"} <= tables
    assert {"jobs_by_state", "jobs_by_provider_guid", "jobs_by_next_poll"} <= indexes


@backends.postgres_only
def test_open_creates_the_schema_in_an_empty_database(location: str, store: Store) -> None:
    assert store.schema_version() == len(PG_MIGRATIONS) == len(MIGRATIONS)
    with backends.raw(location) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
        indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes")}
        time_type = conn.one(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'jobs' AND column_name = 'next_poll_at'"
        )
    assert {"jobs", "documents", "events", "outbox", "inbound_faxes", "imap_taken"} <= tables
    assert {"jobs_by_state", "jobs_by_provider_guid", "jobs_by_state_age"} <= indexes
    assert time_type == "timestamp with time zone"


def test_every_migration_means_the_same_step_on_both_backends() -> None:
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


def test_reopen_is_idempotent_and_keeps_data(location: Location, clock: FakeClock) -> None:
    with backends.open_store(location, clock=clock) as first:
        [job] = first.create_jobs([new_job()])
    for _ in range(2):
        with backends.open_store(location, clock=clock) as again:
            assert again.schema_version() == len(MIGRATIONS)
            assert again.get_job(job.id) == job


@backends.sqlite_only
def test_connection_settings_are_really_set(store: Store) -> None:
    pragmas = store.pragmas()
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 2  # FULL
    assert pragmas["busy_timeout"] == 5000
    assert pragmas["foreign_keys"] == 1
    assert store.integrity_check() == ["ok"]


@backends.postgres_only
def test_postgresql_connections_keep_utc_and_wait_for_locks_as_sqlite_does(
    store: Store,
) -> None:
    with store._write() as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == {"TimeZone": "UTC"}
        assert conn.execute("SHOW lock_timeout").fetchone() == {"lock_timeout": "5s"}


@backends.sqlite_only
def test_wal_is_recorded_in_the_file(db_path: Path, store: Store) -> None:
    with backends.raw(db_path) as conn:
        assert conn.one("PRAGMA journal_mode") == "wal"


def test_a_later_migration_applies_on_top_of_data(location: Location, store: Store) -> None:
    [job] = store.create_jobs([new_job()])
    store.close()
    known = backends.migrations_of(location)
    later = (*known, ("ALTER TABLE jobs ADD COLUMN pages_sent INTEGER NOT NULL DEFAULT 0",))
    with backends.raw(location) as conn:
        assert backends.migrate(conn, later) == len(known) + 1
        assert conn.one("SELECT pages_sent FROM jobs WHERE id = ?", (job.id,)) == 0
        assert backends.migrate(conn, later) == len(known) + 1  # nothing left to do


def test_a_failing_migration_leaves_nothing_behind(location: Location, store: Store) -> None:
    store.close()
    known = backends.migrations_of(location)
    broken = (*known, ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"))
    with backends.raw(location) as conn:
        with pytest.raises(DATABASE_ERRORS):
            backends.migrate(conn, broken)
        assert backends.version(conn) == len(known)
        assert not backends.table_exists(conn, "half_done")


def test_a_newer_schema_is_refused(location: Location, store: Store) -> None:
    store.close()
    with backends.raw(location) as conn:
        backends.set_version(conn, len(MIGRATIONS) + 1)
    with pytest.raises(SchemaTooNew):
        backends.open_store(location)


@backends.postgres_only
def test_instances_starting_at_once_migrate_one_at_a_time(location: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(backends.open_store(location))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert [store.schema_version() for store in opened] == [len(MIGRATIONS)] * 4
    finally:
        for store in opened:
            store.close()
