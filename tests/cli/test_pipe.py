"""A command whose output is cut short (`faxgate status --json | head -1`) ends quietly.

Each command runs in a real process whose standard output is a pipe already closed at the
reading end, so its first write fails as it does once `head` has had enough.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faxgate.cli.common import EXIT_BROKEN_PIPE
from faxgate.hellofax.sandbox import Sandbox


def run_into_closed_pipe(
    tmp_path: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    reading, writing = os.pipe()
    os.close(reading)  # the reader is gone before the first line
    try:
        return subprocess.run(
            [sys.executable, "-m", "faxgate", *argv],
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env or clean_env(tmp_path),
            check=False,
            timeout=60,
        )
    finally:
        os.close(writing)


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FAXGATE_") and name != "CREDENTIALS_DIRECTORY"
    }
    env["FAXGATE_STATE_DIR"] = str(tmp_path / "var")
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "argv", [("status", "--json"), ("status",), ("inbox", "--json"), ("config", "check")]
)
def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path, argv: tuple[str, ...]) -> None:
    result = run_into_closed_pipe(tmp_path, *argv)
    assert result.stderr == ""
    assert result.returncode == EXIT_BROKEN_PIPE


@pytest.mark.parametrize("argv", [("--help",), ("lines", "--help"), ("--version",)])
def test_help_cut_short_ends_quietly(tmp_path: Path, argv: tuple[str, ...]) -> None:
    result = run_into_closed_pipe(tmp_path, *argv)
    assert result.stderr == ""
    assert result.returncode == 0  # argparse's own exit; it drops what it cannot write


async def test_a_provider_listing_cut_short_ends_quietly(sandbox: Sandbox, tmp_path: Path) -> None:
    env = clean_env(tmp_path, FAXGATE_PROVIDER__BASE_URL=sandbox.base_url)
    # In a thread: the sandbox answers on this test's event loop meanwhile.
    result = await asyncio.to_thread(
        run_into_closed_pipe, tmp_path, "transmissions", "--all", env=env
    )
    assert result.stderr == ""
    assert result.returncode == EXIT_BROKEN_PIPE


def test_errors_still_reach_stderr_when_stdout_is_closed(tmp_path: Path) -> None:
    result = run_into_closed_pipe(tmp_path, "status", "no-such-job")
    assert result.returncode == 1
    assert "is not a job id" in result.stderr
    assert "Traceback" not in result.stderr
