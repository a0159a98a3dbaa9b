"""The shipped unit file passes systemd's own checks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import peers

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "faxgate.service"


@pytest.fixture
def analyze() -> str:
    return peers.command("systemd-analyze")


def installed_copy(tmp_path: Path) -> Path:
    """The unit as installed, its ExecStart pointing at this checkout's faxgate."""
    faxgate = Path(sys.executable).with_name("faxgate")
    text = UNIT.read_text().replace("/opt/faxgate/bin/faxgate", str(faxgate))
    copy = tmp_path / "faxgate.service"
    copy.write_text(text)
    return copy


def test_the_unit_verifies(analyze: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze, "verify", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_unit_is_well_hardened(analyze: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(installed_copy(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for faxgate.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.0  # systemd calls up to 2.0 "OK"; docs/operations.md notes it


def test_the_unit_is_type_notify_with_a_watchdog() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text
    assert re.search(r"^WatchdogSec=\d+", text, re.MULTILINE)
    assert "LoadCredential=provider.password:" in text
