"""A real Dovecot per test, and a daemon that watches its mailbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from faxgate.app import Daemon, started
from tests.daemon import fast_settings
from tests.intake.imap.dovecot import PASSWORD, USER, Dovecot
from tests.intake.smtp.testing import SENDER

SHARED = "fax@company.example"


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    server = Dovecot(tmp_path / "dovecot")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        server.remove()


def imap_settings(server: Dovecot, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "enabled": True,
        "host": "127.0.0.1",
        "port": server.imaps_port,
        "tls": "implicit",
        "ca_file": str(server.ca_file),
        "username": USER,
        "password": PASSWORD,
        # Only IDLE may wake the intake within a test's deadlines.
        "poll_interval": "1h",
    }
    values.update(overrides)
    return values


@asynccontextmanager
async def imap_daemon(
    state_dir: Path, server: Dovecot, sections: dict[str, Any] | None = None, **imap: Any
) -> AsyncIterator[Daemon]:
    values: dict[str, Any] = {
        "imap": imap_settings(server, **imap),
        "smtp": {"listen": "127.0.0.1:0", "reader_processes": 0, "allowed_senders": [SENDER]},
        "addressing": {"subject_addresses": [SHARED]},
    }
    values.update(sections or {})
    async with started(fast_settings(state_dir, **values)) as daemon:
        yield daemon
