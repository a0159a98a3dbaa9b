"""A real PostgreSQL server for the tests: a throwaway cluster in a temporary directory.

One cluster per test session (initdb and pg_ctl, on a free port, its unix socket in its
own directory), and a database of its own for each test, made from a template. Run as
root, the cluster belongs to `nobody`: initdb refuses to run as root.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import peers
from tests.ports import free_port

SUPERUSER = "postgres"
# Over TCP the cluster asks for it (scram-sha-256); over its socket it trusts.
PASSWORD = "throwaway-secret"
# Durability is no concern of a cluster that lives for one test session.
_DURABLE_OPTIONS = "-c max_connections=200 -c shared_buffers=32MB"
# Tests need no durability from the server itself (nothing of it outlives them).
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off " + (
    _DURABLE_OPTIONS
)


@dataclass(frozen=True, slots=True)
class PostgresServer:
    """A running cluster: where its socket is, its port, and a way in as the superuser."""

    bindir: Path
    datadir: Path
    socket_dir: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        """A postgresql:// URL over loopback TCP, which needs PASSWORD."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """A postgresql:// URL over the unix socket, trusted without a password."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement through psql, as an operator would; its output, unaligned."""
        done = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-c",
                statement,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"psql {statement!r}: {done.stderr.strip()}")
        return done.stdout.strip()


def postgres_bindir() -> Path:
    """Where Debian's postgresql package keeps initdb and pg_ctl (not on PATH)."""
    peers.command("pg_ctlcluster")  # fails naming the package when PostgreSQL is absent
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    on_path = shutil.which("initdb")
    if not found and on_path is None:
        peers.missing("command:pg_ctlcluster")
    return found[-1].parent if found else Path(str(on_path)).parent


def _as_owner(owner: str | None) -> list[str]:
    """The prefix that runs a command as the cluster's owner (none when not root)."""
    if owner is None:
        return []
    return [peers.command("runuser"), "-u", owner, "--"]


@contextlib.contextmanager
def running_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """A throwaway cluster; `durable`: with fsync on, as a real server (for benches)."""
    bindir = postgres_bindir()
    owner = "nobody" if os.geteuid() == 0 else None
    # Not under pytest's tmp_path: its folders are root's alone, and the owner must reach it.
    top = Path(tempfile.mkdtemp(prefix="faxgate-pg-"))
    datadir, socket_dir = top / "data", top / "run"
    socket_dir.mkdir()
    password_file = top / "password"
    password_file.write_text(PASSWORD + "\n")
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for path in (top, socket_dir, password_file):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    as_owner = _as_owner(owner)
    try:
        subprocess.run(
            [
                *as_owner,
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        settings = _DURABLE_OPTIONS if durable else _SERVER_OPTIONS
        options = f"{settings} -c listen_addresses=127.0.0.1 -p {port} -k {socket_dir}"
        started = subprocess.run(
            [
                *as_owner,
                str(bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(datadir),
                "-l",
                str(top / "server.log"),
                "-o",
                options,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            log = (top / "server.log").read_text(errors="replace")
            raise AssertionError(f"PostgreSQL did not start: {started.stderr}\n{log}")
        try:
            yield PostgresServer(bindir, datadir, socket_dir, port)
        finally:
            subprocess.run(
                [*as_owner, str(bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "fast"],
                capture_output=True,
                check=False,
            )
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole test session."""
    with running_postgres() as server:
        yield server


_database_numbers = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of the test's own (its URL over the socket, trusted);
    dropped afterwards."""
    name = f"test_{os.getpid()}_{next(_database_numbers)}"
    postgres_server.sql(f"CREATE DATABASE {name} TEMPLATE template0")
    try:
        yield postgres_server.socket_url(name)
    finally:
        postgres_server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows a query answers, on a connection of its own."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def held_by(url: str, owner: str) -> int:
    """The work the process `owner` (a LIKE pattern) holds that another could do: faxes
    claimed or being sent, notifications not yet delivered."""
    [(held,)] = rows(
        url,
        "SELECT (SELECT count(*) FROM jobs WHERE lease_owner LIKE %s"
        "        AND state IN ('queued', 'submitting'))"
        " + (SELECT count(*) FROM outbox WHERE lease_owner LIKE %s"
        "        AND delivered_at IS NULL)",
        owner,
        owner,
    )
    return int(held)
