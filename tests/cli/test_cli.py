"""The command line: help everywhere, settings checks, plain errors and exit codes."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from faxgate import __version__
from faxgate.cli import build_parser, main

pytestmark = pytest.mark.usefixtures("clean_environment")


def command_paths(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every command and sub-command the parser knows, e.g. ("lines", "buy")."""
    paths = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.append((*prefix, name))
                paths.extend(command_paths(sub, (*prefix, name)))
    return paths


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"faxgate {__version__}"


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    paths = command_paths(build_parser())
    expected = {("run",), ("config", "check"), ("account",), ("lines", "buy"), ("sandbox",)}
    assert expected <= set(paths)
    for path in paths:
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0, path
        assert "usage: faxgate" in capsys.readouterr().out, path


def test_no_command_prints_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: faxgate" in capsys.readouterr().err


@pytest.mark.parametrize(("group", "command"), [("config", "check"), ("smtp", "hash-password")])
def test_a_command_group_alone_prints_its_usage_and_fails(
    group: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([group]) == 2
    err = capsys.readouterr().err
    assert f"usage: faxgate {group}" in err
    assert command in err


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "faxgate", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"faxgate {__version__}"


def test_config_check_prints_effective_settings_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", "top-secret")
    monkeypatch.setenv("FAXGATE_SMTP__LISTEN", "127.0.0.1:2626")
    assert main(["config", "check"]) == 0
    out = capsys.readouterr().out
    assert "top-secret" not in out
    assert 'password = "********"' in out
    assert 'listen = "127.0.0.1:2626"' in out

    assert main(["config", "check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["provider"]["password"] == "********"
    assert data["settings"]["smtp"]["listen"] == "127.0.0.1:2626"


def test_config_check_warns_that_v3_without_events_waits_for_polls(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__KIND", "dropbox_fax")
    monkeypatch.setenv("FAXGATE_PROVIDER__API_KEY", "a-v3-api-key")
    assert main(["config", "check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (warning,) = data["warnings"]
    assert "kind = dropbox_fax without http.public_url" in warning
    assert data["settings"]["provider"]["api_key"] == "********"
    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", "https://fax.example.com")
    assert main(["config", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_config_check_warns_that_hellofax_without_callbacks_cannot_confirm_outcomes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__KIND", "hellofax")
    monkeypatch.setenv("FAXGATE_PROVIDER__ACCOUNT_GUID", "a" * 40)
    monkeypatch.setenv("FAXGATE_PROVIDER__USERNAME", "me@example.com")
    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", "secret")
    assert main(["config", "check"]) == 0
    err = capsys.readouterr().err
    assert "warning: provider kind = hellofax without http.public_url" in err
    assert "no fax's outcome can be confirmed" in err
    assert main(["config", "check", "--json"]) == 0
    (warning,) = json.loads(capsys.readouterr().out)["warnings"]
    assert "presumed_sent" in warning

    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", "https://fax.example.com")
    assert main(["config", "check"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["config", "check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_config_check_refuses_bad_settings_by_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[provider]\nkind = "fax-o-matic"\npassword = 5\n[smtp]\nport = 25\n')
    assert main(["--config", str(config), "config", "check"]) == 2
    err = capsys.readouterr().err
    assert "provider.kind" in err
    assert "smtp.port: unknown setting" in err
    assert "fax-o-matic" not in err


def test_a_missing_config_file_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", "nowhere.toml", "config", "check"]) == 2
    assert "nowhere.toml (from --config) does not exist" in capsys.readouterr().err


def test_argument_errors_are_caught_before_any_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lines", "buy", "41"]) == 1
    assert "not an area code" in capsys.readouterr().err
    assert main(["areacodes", "California"]) == 1
    assert "not a state code" in capsys.readouterr().err
    assert main(["lines", "delete", "call me"]) == 1
    assert "call me" in capsys.readouterr().err


def test_an_unreachable_sandbox_gets_a_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, unused_tcp_port: int
) -> None:
    monkeypatch.setenv("FAXGATE_SANDBOX__LISTEN", f"127.0.0.1:{unused_tcp_port}")
    assert main(["lines"]) == 1
    err = capsys.readouterr().err
    assert "faxgate run" in err
    assert "sandbox-password" not in err


def test_config_check_prints_valid_toml_that_loads_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["config", "check"]) == 0
    printed = capsys.readouterr().out
    again = tmp_path / "again.toml"
    again.write_text(printed)
    assert main(["--config", str(again), "config", "check"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == printed.splitlines()[1:]
