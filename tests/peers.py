"""The real programs tests run as peers (tests/peers.txt); a missing one fails its test
naming the Debian package, and the command that installs every peer at once."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PEERS_FILE = Path(__file__).with_name("peers.txt")


def _packages() -> dict[str, str]:
    """check ("command:swaks", "perl:Net::SSLeay") -> Debian package."""
    found = {}
    for line in PEERS_FILE.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            found[fields[1]] = fields[0]
    return found


def missing(check: str) -> None:
    """Fail the test: the peer checked by `check` (as in peers.txt) is not here."""
    package = _packages().get(check)
    if package is None:
        raise AssertionError(f"{check} is not listed in {PEERS_FILE.name}: add it there")
    pytest.fail(
        f"{check.split(':', 1)[1]} is missing: install the Debian package {package}"
        " (scripts/test-peers install, which `make test` runs, installs every peer)"
    )


def command(name: str) -> str:
    """The path of a peer program."""
    path = shutil.which(name)
    if path is None:
        missing(f"command:{name}")
    assert path is not None
    return path


def perl_module(name: str) -> None:
    """Fail unless Perl can load `name` (swaks needs some for STARTTLS and AUTH)."""
    perl = shutil.which("perl")
    loaded = perl is not None and subprocess.run([perl, f"-M{name}", "-e", "1"]).returncode == 0
    if not loaded:
        missing(f"perl:{name}")
