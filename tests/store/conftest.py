"""The store's tests run on both backends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgate.store import Store
from tests.postgres import postgres_server, postgres_url
from tests.store.backends import Location, open_store
from tests.store.making import FakeClock

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


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(location: Location) -> Path:
    assert isinstance(location, Path), "an SQLite test: mark it sqlite_only"
    return location


@pytest.fixture
def store(location: Location, clock: FakeClock) -> Iterator[Store]:
    with open_store(location, clock=clock) as opened:
        yield opened
