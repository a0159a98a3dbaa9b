"""The throwaway PostgreSQL cluster the store's tests run against (tests/postgres.py)."""

from __future__ import annotations

import shutil

import psycopg
import pytest

from tests import postgres
from tests.postgres import PostgresServer


def test_the_cluster_is_a_real_server_on_its_own_port(postgres_server: PostgresServer) -> None:
    assert postgres_server.port not in (0, 5432)
    version = postgres_server.sql("SHOW server_version_num")
    assert int(version) >= 150000
    assert (postgres_server.socket_dir / f".s.PGSQL.{postgres_server.port}").is_socket()
    with psycopg.connect(postgres_server.socket_url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_each_test_has_a_fresh_database_of_its_own(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE left_behind (x integer)")
    assert name is not None
    assert name[0].startswith("test_")
    assert tables == (0,)
    databases = postgres_server.sql("SELECT datname FROM pg_database").split()
    assert name[0] in databases


def test_a_machine_without_postgresql_is_told_which_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="install the Debian package postgresql"):
        postgres.postgres_bindir()
