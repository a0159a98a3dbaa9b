"""`faxgate sandbox` serves until interrupted; `faxgate sandbox inbound` injects a fax."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from faxgate.cli.sandbox import register
from faxgate.dropbox_fax.sandbox import DropboxFaxSandbox
from faxgate.hellofax.sandbox import (
    DEFAULT_ACCOUNT_GUID,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SPEED_PRESETS,
    Sandbox,
)
from tests.conftest import SANDBOX_LINE, http_client, sandbox_settings

# Runs the sandbox command alone, as the main CLI would dispatch it.
SERVE = """
import argparse, sys
from faxgate.cli.sandbox import register
parser = argparse.ArgumentParser()
register(parser.add_subparsers())
args = parser.parse_args(sys.argv[1:])
sys.exit(args.func(args))
"""


def parser() -> argparse.ArgumentParser:
    built = argparse.ArgumentParser()
    register(built.add_subparsers())
    return built


@asynccontextmanager
async def serving(tmp_path: Path, *options: str, last: str) -> AsyncIterator[dict[str, str]]:
    """`faxgate sandbox` with `options` on a free port, its state in tmp_path/state, in a
    child process: what it printed, up to the line naming `last`. Ctrl-C on leaving, which
    must end it with exit status 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVE,
        "sandbox",
        *options,
        "--port",
        "0",
        "--speed",
        "test",
        "--state-dir",
        str(tmp_path / "state"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        async with asyncio.timeout(20):
            while last not in printed:
                line = (await process.stdout.readline()).decode()
                assert line, f"the sandbox exited before printing its {last}"
                key, _, value = line.strip().partition(":")
                printed[key] = value.strip()
        yield printed
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            code = await process.wait()
    assert code == 0


def test_defaults_and_speed_presets() -> None:
    args = parser().parse_args(["sandbox"])
    assert (args.host, args.port, args.state_dir) == ("127.0.0.1", 8090, Path("var/sandbox"))
    assert (args.account_guid, args.username, args.password) == (
        DEFAULT_ACCOUNT_GUID,
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
    )
    assert args.speed == SPEED_PRESETS["quick"]
    assert parser().parse_args(["sandbox", "--speed", "realistic"]).speed == 1.0
    assert parser().parse_args(["sandbox", "--speed", "0.25"]).speed == 0.25
    assert args.removal == "sent"  # as the provider does
    assert parser().parse_args(["sandbox", "--removal", "nothing"]).removal == "nothing"


@pytest.mark.parametrize("speed", ["warp", "0", "-1"])
def test_a_bad_speed_is_a_usage_error(speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["sandbox", "--speed", speed])
    assert exited.value.code == 2
    assert "speed" in capsys.readouterr().err


async def test_serve_prints_how_to_reach_it_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    async with serving(tmp_path, last="password") as printed:
        assert printed["account GUID"] == DEFAULT_ACCOUNT_GUID
        assert printed["username"] == DEFAULT_USERNAME
        assert printed["password"] == DEFAULT_PASSWORD
        async with http_client(auth=(DEFAULT_USERNAME, DEFAULT_PASSWORD)) as client:
            answer = await client.get(f"{printed['base URL']}/Accounts/{DEFAULT_ACCOUNT_GUID}")
        assert answer.status_code == 200
        assert (tmp_path / "state" / "sandbox.sqlite3").exists()


async def test_serve_reports_a_port_in_use(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    port = sandbox.base_url.rsplit(":", 1)[1].split("/")[0]
    args = parser().parse_args(["sandbox", "--port", port, "--state-dir", str(tmp_path / "s")])
    assert await asyncio.to_thread(args.func, args) == 1
    assert "cannot serve" in capsys.readouterr().err


def test_serve_refuses_bad_settings_without_echoing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser().parse_args(
        ["sandbox", "--account-guid", "not-a-guid", "--state-dir", str(tmp_path)]
    )
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "account_guid" in err
    assert "not-a-guid" not in err


async def test_the_inbound_command_injects_into_a_running_sandbox(
    tmp_path: Path, sandbox: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "memo.txt"
    document.write_text("Hello from outside\n")
    command = ["sandbox", "inbound", "--to", SANDBOX_LINE, "--from", "12125550199"]
    args = parser().parse_args([*command, "--url", sandbox.base_url, str(document)])
    assert await asyncio.to_thread(args.func, args) == 0
    [received_fax] = sandbox.inspect()
    assert received_fax.is_inbound
    assert received_fax.from_ == "12125550199"
    assert received_fax.guid in capsys.readouterr().out

    args.to = "12125550000"
    assert await asyncio.to_thread(args.func, args) == 1
    assert "not one of this account's fax lines" in capsys.readouterr().err


async def test_the_inbound_command_reports_a_sandbox_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "memo.txt"
    document.write_text("Hello\n")
    command = ["sandbox", "inbound", "--to", SANDBOX_LINE, "--from", "12125550199"]
    args = parser().parse_args([*command, "--url", "http://127.0.0.1:9/v1", str(document)])
    assert await asyncio.to_thread(args.func, args) == 1
    assert capsys.readouterr().err.startswith("faxgate sandbox inbound:")


async def test_serve_api_v3_prints_its_key_and_answers_v3(tmp_path: Path) -> None:
    options = ("--api", "v3", "--api-key", "a-key-for-this-test")
    async with serving(tmp_path, *options, last="API key") as printed:
        assert printed["API key"].startswith("a-key-for-this-test ")
        assert printed["base URL"].endswith("/v3")
        async with http_client(auth=("a-key-for-this-test", "")) as client:
            answer = await client.get(f"{printed['base URL']}/fax/list")
        assert answer.status_code == 200
        assert answer.json()["faxes"] == []


async def test_the_inbound_command_injects_into_a_v3_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = tmp_path / "memo.txt"
    document.write_text("Hello from outside\n")
    async with DropboxFaxSandbox(sandbox_settings(tmp_path / "v3")) as v3:
        command = ["sandbox", "inbound", "--to", SANDBOX_LINE, "--from", "12125550199"]
        args = parser().parse_args([*command, "--url", v3.base_url, str(document)])
        assert await asyncio.to_thread(args.func, args) == 0
        [received_fax] = v3.inspect()
    assert received_fax.is_inbound
    out = capsys.readouterr().out
    assert out.strip() == f"received {received_fax.guid} at {SANDBOX_LINE} from 12125550199"
