"""`faxgate doctor` against the sandbox over real HTTP, and a real faxgate beside it."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import Store
from tests.cli.running import as_hellofax_account, faxgate
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_LINE,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    CallbackReceiver,
)
from tests.daemon import CALLBACK_TOKEN, DaemonProcess
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

PortFactory = Callable[[], int]


@pytest.fixture(autouse=True)
def pointed_at_sandbox(
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    clean_environment: Path,
    unused_tcp_port_factory: PortFactory,
) -> Sandbox:
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", sandbox.base_url)
    monkeypatch.setenv("FAXGATE_HTTP__LISTEN", f"127.0.0.1:{unused_tcp_port_factory()}")
    monkeypatch.setenv("FAXGATE_SMTP__LISTEN", f"127.0.0.1:{unused_tcp_port_factory()}")
    monkeypatch.setenv("FAXGATE_HTTP__CALLBACK_TOKEN", CALLBACK_TOKEN)
    return sandbox


async def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]]]:
    code, out, _ = await faxgate(capsys, "doctor", "--json")
    report = json.loads(out)
    assert report["ok"] is (code == 0)
    assert report["problems"] == sum(c["state"] == "problem" for c in report["checks"])
    checks: list[dict[str, Any]] = report["checks"]
    return code, checks


def of(checks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [check for check in checks if check["check"] == name]


def only(checks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (check,) = of(checks, name)
    return check


def problems(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [check for check in checks if check["state"] == "problem"]
    assert all(check["fix"] for check in found), found  # every problem has its fix
    return found


async def exits_1(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The checks of a doctor run that found a problem and said so with exit code 1."""
    code, checks = await doctor(capsys)
    assert code == 1
    return checks


async def the_problem(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The one problem a doctor run found (exit code 1)."""
    (problem,) = problems(await exits_1(capsys))
    return problem


@pytest.fixture
def provider(sandbox: Sandbox) -> Callable[[], HelloFaxClient]:
    return lambda: HelloFaxClient(
        sandbox.base_url, SANDBOX_GUID, SANDBOX_USERNAME, SANDBOX_PASSWORD
    )


async def test_a_running_faxgate_with_its_callbacks_registered_has_no_problem(
    capsys: pytest.CaptureFixture[str],
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port_factory: PortFactory,
) -> None:
    http_port, smtp_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    daemon = DaemonProcess(
        tmp_path / "var",
        sandbox,
        http_port,
        {
            "FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp_port}",
            "FAXGATE_HTTP__PUBLIC_URL": f"http://127.0.0.1:{http_port}",
        },
    )
    for name, value in daemon.env.items():  # the doctor reads the daemon's own settings
        if name.startswith("FAXGATE_"):
            monkeypatch.setenv(name, value)
    await daemon.start()
    try:
        code, _, _ = await faxgate(capsys, "account", "--register-callbacks")
        assert code == 0
        code, checks = await doctor(capsys)
    finally:
        assert await daemon.stop() == 0
    assert problems(checks) == []
    assert code == 0
    assert "accepts the credentials" in only(checks, "provider")["detail"]
    assert only(checks, "callbacks")["state"] == "ok"
    assert "+1 415-555-0100" in only(checks, "fax lines")["detail"]
    assert "faxgate, healthy" in only(checks, "public URL")["detail"]
    assert "a faxgate is running" in only(checks, "daemon")["detail"]
    ports = [check["detail"] for check in of(checks, "port")]
    assert len(ports) == 2
    assert all("held by the running faxgate" in detail for detail in ports), ports
    assert only(checks, "folders")["state"] == "ok"
    assert CALLBACK_TOKEN not in json.dumps(checks)


async def test_refused_credentials_are_named_with_their_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", "not-the-password")
    code, out, _ = await faxgate(capsys, "doctor")
    assert code == 1
    lines = out.splitlines()
    (refused,) = [n for n, line in enumerate(lines) if line.startswith("PROBLEM  provider")]
    assert "refused the credentials" in lines[refused]
    assert "fix:" in lines[refused + 1]
    assert "provider.username and the password" in lines[refused + 1]
    assert "not-the-password" not in out
    assert lines[-1] == "1 problem: see each fix above"
    code, checks = await doctor(capsys)
    assert only(checks, "callbacks")["state"] == "skipped"
    assert only(checks, "fax lines")["state"] == "skipped"


async def test_an_unknown_account_points_at_the_guid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__ACCOUNT_GUID", "0" * 40)
    problem = await the_problem(capsys)
    assert "no such account" in problem["detail"]
    assert "provider.account_guid" in problem["fix"]


async def test_a_provider_out_of_reach(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", f"http://127.0.0.1:{unused_tcp_port}/v1")
    problem = await the_problem(capsys)
    assert problem["check"] == "provider"
    assert "could not reach" in problem["detail"]
    assert "network" in problem["fix"]


async def test_callback_urls_elsewhere_are_shown_without_the_secret(
    capsys: pytest.CaptureFixture[str], provider: Callable[[], HelloFaxClient]
) -> None:
    problem = await the_problem(capsys)
    assert problem["check"] == "callbacks"
    assert (
        "inbound faxes go nowhere (no URL set), but this faxgate expects http://127.0.0.1:"
        in problem["detail"]
    )
    assert "faxgate account --register-callbacks" in problem["fix"]

    async with provider() as client:
        await client.update_account(
            inbound_url="https://old.example.com/callbacks/an-older-secret-token/inbound"
        )
    code, checks = await doctor(capsys)
    detail = only(checks, "callbacks")["detail"]
    assert "go to https://old.example.com/callbacks/<another token>/inbound, but" in detail
    assert "an-older-secret-token" not in detail
    assert CALLBACK_TOKEN not in detail

    code, _, _ = await faxgate(capsys, "account", "--register-callbacks")
    assert code == 0
    code, checks = await doctor(capsys)
    assert only(checks, "callbacks")["state"] == "ok"
    assert code == 0


async def test_without_a_token_yet_the_doctor_makes_none(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FAXGATE_HTTP__CALLBACK_TOKEN")
    checks = await exits_1(capsys)
    assert "no callback token yet" in only(checks, "callbacks")["detail"]
    assert not (tmp_path / "var" / "callback-token").exists()


async def test_a_token_it_cannot_read(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FAXGATE_HTTP__CALLBACK_TOKEN")
    (tmp_path / "var" / "callback-token").mkdir(parents=True)  # unreadable as a file
    checks = await exits_1(capsys)
    callbacks = only(checks, "callbacks")
    assert "cannot read the callback token" in callbacks["detail"]
    assert "the user faxgate runs as" in callbacks["fix"]


async def test_a_real_account_without_a_public_url(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_hellofax_account(monkeypatch)
    checks = await exits_1(capsys)
    callbacks = only(checks, "callbacks")
    assert "http.public_url is not set" in callbacks["detail"]
    assert "set http.public_url" in callbacks["fix"]
    assert only(checks, "public URL")["state"] == "skipped"


async def test_a_public_url_that_does_not_reach_faxgate(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unused_tcp_port: int,
) -> None:
    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", f"http://127.0.0.1:{unused_tcp_port}")
    checks = await exits_1(capsys)
    public = only(checks, "public URL")
    assert public["state"] == "problem"
    assert f"http://127.0.0.1:{unused_tcp_port}/healthz does not answer" in public["detail"]
    assert "reverse proxy" in public["fix"]

    other = CallbackReceiver()  # a web server, but not faxgate: it takes only POSTs
    await other.start()
    try:
        monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", other.url("").rstrip("/"))
        checks = await exits_1(capsys)
    finally:
        await other.stop()
    public = only(checks, "public URL")
    assert public["state"] == "problem"
    assert "answers 405, not faxgate" in public["detail"]


async def test_no_fax_line_and_a_line_not_on_the_account(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    provider: Callable[[], HelloFaxClient],
) -> None:
    await faxgate(capsys, "account", "--register-callbacks")
    monkeypatch.setenv("FAXGATE_SMTP__DEFAULT_LINE", "14155550199")
    problem = await the_problem(capsys)
    assert "smtp.default_line is +1 415-555-0199" in problem["detail"]
    assert "+1 415-555-0100" in problem["fix"]

    monkeypatch.delenv("FAXGATE_SMTP__DEFAULT_LINE")
    async with provider() as client:
        await client.delete_fax_line(SANDBOX_LINE)
    _, checks = await doctor(capsys)
    (problem,) = problems(checks)
    assert "the account has no fax line" in problem["detail"]
    assert "faxgate lines buy AREA_CODE" in problem["fix"]


@pytest.fixture
def listening(unused_tcp_port: int) -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", unused_tcp_port))
        other.listen()
        yield unused_tcp_port


async def test_a_port_held_by_another_program(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, listening: int
) -> None:
    await faxgate(capsys, "account", "--register-callbacks")
    monkeypatch.setenv("FAXGATE_SMTP__LISTEN", f"127.0.0.1:{listening}")
    problem = await the_problem(capsys)
    assert problem["check"] == "port"
    assert f"the SMTP listener cannot listen on 127.0.0.1:{listening}" in problem["detail"]
    assert f"sport = :{listening}" in problem["fix"]
    assert "smtp.listen" in problem["fix"]


async def test_folders_it_cannot_use(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await faxgate(capsys, "account", "--register-callbacks")
    missing = tmp_path / "no-such-outbox"
    monkeypatch.setenv("FAXGATE_FOLDERS", json.dumps([{"path": str(missing)}]))
    (tmp_path / "state-file").write_text("a file where the inbound folder should be")
    monkeypatch.setenv("FAXGATE_INBOUND__DEFAULT_FOLDER", str(tmp_path / "state-file"))
    checks = await exits_1(capsys)
    found = problems(checks)
    assert [p["check"] for p in found] == ["folders", "folders"]
    assert f"the hot folder {missing} does not exist" in found[0]["detail"]
    assert "is not a folder" in found[1]["detail"]
    assert "ReadWritePaths=" in found[0]["fix"]


async def test_a_postgresql_store_is_checked_where_it_is(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    monkeypatch.setenv("FAXGATE_STORE__URL", postgres_url)
    _, checks = await doctor(capsys)
    store = only(checks, "store")
    assert store["state"] == "ok"
    assert f"the PostgreSQL store {postgres_url} answers" in store["detail"]

    Store.open_url(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE faxgate_schema SET version = version + 1")
    _, checks = await doctor(capsys)
    store = only(checks, "store")
    assert store["state"] == "problem"
    assert "newer faxgate" in store["detail"]
    assert "upgrade faxgate" in store["fix"]


async def test_a_postgresql_store_out_of_reach_is_named_with_its_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "postgresql://faxgate@127.0.0.1:1/faxgate"
    monkeypatch.setenv("FAXGATE_STORE__URL", url)
    code, checks = await doctor(capsys)
    assert code != 0
    store = only(checks, "store")
    assert store["state"] == "problem"
    assert store["detail"].startswith(f"the store {url} cannot be reached")
    assert "store.url" in store["fix"]
