"""Who may see the status pages: the setting that must be there when the server binds
beyond loopback, HTTP Basic against a password or its hash, a reverse proxy's header, and
/healthz, /metrics and the callbacks never behind it. Over real HTTP on loopback."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from faxgate.app import started
from faxgate.domain.passwords import hash_password
from faxgate.settings import ConfigError, load_settings, masked_dump
from faxgate.settings.sending import is_loopback
from faxgate.store import Store
from faxgate.web.guard import StatusAccess
from faxgate.web.server import HttpServer
from tests.daemon import CALLBACK_TOKEN, fast_settings
from tests.web.test_statuspages import serve

PASSWORD = "correct horse battery staple"
PAGES = ("/", "/?state=sent", "/jobs/zzzzzzzzzzzz", "/inbound/zzzzzzzzzzzz")


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.10", False),
        ("fax.example.com", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.usefixtures("clean_environment")
def test_a_server_beyond_loopback_needs_a_password_or_a_proxy_header(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAXGATE_HTTP__LISTEN", "0.0.0.0:8025")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "not loopback" in message
    assert "status_password" in message
    assert "status_trust_header" in message

    monkeypatch.setenv("FAXGATE_HTTP__STATUS_TRUST_HEADER", "X-Remote-User")
    assert load_settings().http.status_trust_header == "X-Remote-User"
    monkeypatch.delenv("FAXGATE_HTTP__STATUS_TRUST_HEADER")

    # A systemd credential, as other secrets; masked wherever settings are shown.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "http.status_password").write_text(PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_settings()
    assert settings.http.status_password.get_secret_value() == PASSWORD
    assert masked_dump(settings)["http"]["status_password"] == "********"
    assert PASSWORD not in repr(settings)


@pytest.mark.usefixtures("clean_environment")
def test_a_hash_that_is_not_one_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = "scrypt$16384$8$1$c2FsdHNhbHQ$secretpart"
    monkeypatch.setenv("FAXGATE_HTTP__STATUS_PASSWORD", broken)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "status_password" in str(refused.value)
    assert "secretpart" not in str(refused.value)
    monkeypatch.setenv("FAXGATE_HTTP__STATUS_PASSWORD", hash_password(PASSWORD))
    assert load_settings().http.status_password.get_secret_value().startswith("scrypt$")


# ---------------------------------------------------------------------- over HTTP


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3") as store:
        yield store


@pytest.fixture(params=["plain", "hashed"])
async def guarded(request: pytest.FixtureRequest, empty_store: Store) -> AsyncIterator[HttpServer]:
    password = PASSWORD if request.param == "plain" else hash_password(PASSWORD)
    http = await serve(empty_store, access=StatusAccess(user="ops", password=password))
    try:
        yield http
    finally:
        await http.stop()


async def test_every_status_page_asks_for_the_password(guarded: HttpServer) -> None:
    base = f"http://127.0.0.1:{guarded.port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for path in PAGES:
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith('Basic realm="faxgate status"')
            for wrong in (
                basic("ops", "guess"),
                basic("root", PASSWORD),
                {"Authorization": "Basic !!"},
            ):
                assert (await http.get(path, headers=wrong)).status_code == 401, path
        assert (await http.get("/", headers=basic("ops", PASSWORD))).status_code == 200
        assert (await http.get("/?state=sent", headers=basic("ops", PASSWORD))).status_code == 200
        # Past the password, an unknown job is what it is.
        assert (await http.get(PAGES[2], headers=basic("ops", PASSWORD))).status_code == 404


async def test_a_proxy_header_is_trusted_when_set(empty_store: Store) -> None:
    http = await serve(empty_store, access=StatusAccess(trust_header="X-Remote-User"))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}") as client:
            assert (await client.get("/")).status_code == 403
            assert (await client.get("/", headers={"X-Remote-User": ""})).status_code == 403
            assert (await client.get("/", headers={"X-Remote-User": "ops"})).status_code == 200
            assert (await client.get("/jobs/zzzzzzzzzzzz")).status_code == 403
    finally:
        await http.stop()


async def test_the_daemon_guards_its_pages_only_and_logs_no_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = fast_settings(
        tmp_path / "state", http={"status_user": "ops", "status_password": PASSWORD}
    )
    caplog.set_level(logging.DEBUG)
    async with started(settings) as daemon:
        base = f"http://127.0.0.1:{daemon.http.port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            assert (await http.get("/")).status_code == 401
            assert (await http.get("/", headers=basic("ops", PASSWORD))).status_code == 200
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
            # The callbacks answer for themselves (a bad body), never with a password prompt.
            callback = await http.post(f"/callbacks/{CALLBACK_TOKEN}/outbound", content=b"{}")
            assert callback.status_code not in (401, 403)
    assert "status pages guarded_by=password" in caplog.text
    encoded = basic("ops", PASSWORD)["Authorization"].split()[1]
    assert PASSWORD not in caplog.text
    assert encoded not in caplog.text
