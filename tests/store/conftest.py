"""The store's tests run on both backends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.postgres import postgres_server, postgres_url
from tests.store.backends import Location

__all__ = ["postgres_server", "postgres_url"]


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that asks for a store's location runs on both backends, unless it names
    one (backends.sqlite_only, backends.postgres_only)."""
    return str(request.param)


@pytest.fixture
def location(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Location:
    """Where the test's store is: an SQLite file, or a fresh PostgreSQL database's URL."""
    if backend == "sqlite":
        return tmp_path / "state" / "faxgate.db"
    return str(request.getfixturevalue("postgres_url"))
