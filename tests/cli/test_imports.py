"""The command line starts fast because each command imports only what it needs.

Guarded by what is imported, not by timing (bench/bench_cli.py measures the time): the
settings and the everyday commands never load the sandbox's server, aiohttp, pypdf, the
HTTP client or the daemon.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faxgate.cli import COMMAND_GROUPS, GROUP_OF_COMMAND, build_parser, main

# Loaded by the daemon, the sandbox or the API commands; never by settings or `status`.
HEAVY = (
    "aiohttp",
    "pypdf",
    "httpx",
    "aiosmtplib",
    "faxgate.hellofax.sandbox",
    "faxgate.app",
    "faxgate.notify.mailer",
)

# Runs the CLI as the `faxgate` script does, then prints what got imported.
RUN_AND_LIST = """
import sys
from faxgate.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FAXGATE_") and name != "CREDENTIALS_DIRECTORY"
    }
    env["FAXGATE_STATE_DIR"] = str(tmp_path / "var")
    return env


def modules_after(tmp_path: Path, *argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(tmp_path),
        check=False,
        timeout=60,
    )
    assert "Traceback" not in result.stderr, result.stderr
    listed = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    assert listed, result.stdout + result.stderr
    return set(listed[-1].split()[1:])


def heavy_among(modules: set[str]) -> list[str]:
    return sorted(
        name for name in modules if any(name == h or name.startswith(f"{h}.") for h in HEAVY)
    )


def test_the_settings_import_no_server_pdf_or_http_library(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import faxgate.settings, sys; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    modules = set(result.stdout.split())
    assert "faxgate.settings" in modules
    assert heavy_among(modules) == []


def test_version_loads_neither_settings_nor_pydantic(tmp_path: Path) -> None:
    modules = modules_after(tmp_path, "--version")
    assert "faxgate.cli" in modules
    loaded = sorted(m for m in modules if m.split(".")[0] in {"pydantic", "asyncio"})
    assert loaded == []
    assert "faxgate.settings" not in modules
    assert heavy_among(modules) == []


@pytest.mark.parametrize(
    "argv", [("status",), ("status", "--json"), ("inbox",), ("config", "check")]
)
def test_everyday_commands_load_only_what_they_need(tmp_path: Path, argv: tuple[str, ...]) -> None:
    modules = modules_after(tmp_path, *argv)
    assert "faxgate.settings" in modules  # the command really ran
    assert heavy_among(modules) == []
    other_groups = {f"faxgate.cli.{g}" for g in COMMAND_GROUPS} - {
        f"faxgate.cli.{GROUP_OF_COMMAND[argv[0]]}"
    }
    assert sorted(other_groups & modules) == []
    assert "phonenumbers" not in modules  # numbers are shown as stored, not reformatted
    # Checks that only some settings need, loaded when a value needs them.
    assert sorted(modules & ONLY_WHEN_NEEDED) == []


# Loaded by the settings only for a value that needs them (addresses, patterns, password
# hashes, a mistyped variable, a settings file), or by a command only for what it does
# (cancel's report).
ONLY_WHEN_NEEDED = {
    "faxgate.domain.inbound_routes",
    "faxgate.domain.passwords",
    "faxgate.domain.outcomes",
    "difflib",
    "tomllib",
}


def test_config_check_loads_neither_the_store_nor_the_job_rules(tmp_path: Path) -> None:
    modules = modules_after(tmp_path, "config", "check")
    assert "faxgate.settings" in modules
    loaded = sorted(
        m for m in modules if m.split(".")[:2] in (["faxgate", "store"], ["faxgate", "domain"])
    )
    assert loaded == []


def test_settings_that_need_the_checks_still_load_them(tmp_path: Path) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text('[inbound]\ndefault_email = "Fax Desk <desk@example.com>"\n')
    modules = modules_after(tmp_path, "--config", str(config), "config", "check")
    assert "faxgate.domain.inbound_routes" in modules
    assert "tomllib" in modules


def test_each_command_is_found_in_the_group_that_registers_it() -> None:
    for group in COMMAND_GROUPS:
        parser = build_parser([group])
        (commands,) = (
            action.choices
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
        )
        assert {GROUP_OF_COMMAND.get(name) for name in commands} == {group}, group
    assert set(GROUP_OF_COMMAND.values()) == set(COMMAND_GROUPS)


@pytest.mark.parametrize(
    "before",
    [["-c", "{config}"], ["--config={config}"], ["-vc", "{config}"], ["--conf", "{config}"]],
)
def test_global_options_before_the_command_are_read_as_before(
    before: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    # A settings file named like a command must not be taken for one.
    config = tmp_path / "inbox"
    config.write_text('[smtp]\nlisten = "127.0.0.1:2727"\n')
    argv = [part.format(config=config) for part in before]
    assert main([*argv, "config", "check"]) == 0
    assert 'listen = "127.0.0.1:2727"' in capsys.readouterr().out


def test_a_mistyped_command_still_lists_every_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["stauts"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'stauts'" in err
    for command in GROUP_OF_COMMAND:
        assert command in err


@pytest.mark.parametrize("argv", [["-h", "status"], ["-vh", "inbox"], ["--help"]])
def test_the_full_help_lists_every_command(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    for command in GROUP_OF_COMMAND:
        assert f"    {command} " in shown, command


def test_no_command_shows_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    shown = capsys.readouterr().err
    for command in GROUP_OF_COMMAND:
        assert f"    {command} " in shown, command


def test_help_after_a_command_is_that_command_s(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["status", "-h"])
    assert capsys.readouterr().out.startswith("usage: faxgate status")
