"""The cyclic garbage collector waits while a command's start-up is built, and in the
command's own process what start-up built is frozen out of its sight."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faxgate.cli import main
from faxgate.cli.common import start_up

SCRIPT = """
import gc, sys
from faxgate.cli import main
sys.argv = ["faxgate", *sys.argv[1:]]
try:
    code = main()
except SystemExit as exited:  # --version: argparse exits from within start-up
    code = exited.code
print("AFTER", code, gc.isenabled(), gc.get_freeze_count())
"""


def test_the_collector_waits_during_start_up_and_runs_again_after() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with start_up():
        assert not gc.isenabled()
        with start_up():  # nested: the outer one decides
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # a caller's process: nothing frozen


def test_the_collector_runs_again_when_start_up_fails() -> None:
    with pytest.raises(RuntimeError), start_up():
        raise RuntimeError("settings refused")
    assert gc.isenabled()


def test_a_command_run_in_a_caller_s_process_leaves_the_collector_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    frozen = gc.get_freeze_count()
    assert main(["config", "check"]) == 0
    assert main(["--config", "nowhere.toml", "config", "check"]) == 2
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
    capsys.readouterr()


@pytest.mark.parametrize("argv", [("status",), ("config", "check"), ("--version",)])
def test_the_command_s_own_process_freezes_what_start_up_built(
    tmp_path: Path, argv: tuple[str, ...]
) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAXGATE_")}
    env["FAXGATE_STATE_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("AFTER ")]
    _, code, enabled, frozen = line.split()
    assert code == "0"
    assert enabled == "True"  # the command itself runs with the collector, as a daemon must
    assert int(frozen) > 1_000


RELOAD = """
import argparse, gc, sys
from faxgate.cli import common

common.freeze_what_start_up_builds()  # as main() does for the faxgate script
common.settings_from(argparse.Namespace(config=None))
first = gc.get_freeze_count()
reloaded = common.settings_from(argparse.Namespace(config=None))  # a daemon's reload
print("FROZEN", first, gc.get_freeze_count(), gc.isenabled())
"""


def test_only_the_first_settings_are_frozen_not_a_reload_s(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FAXGATE_")}
    env["FAXGATE_STATE_DIR"] = str(tmp_path / "var")
    result = subprocess.run(
        [sys.executable, "-c", RELOAD],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=60,
    )
    _, first, after_reload, enabled = result.stdout.split()
    assert int(first) > 1_000
    assert after_reload == first
    assert enabled == "True"
