"""The API commands on the Dropbox Fax API v3, against a loopback server answering with
the description's fixtures: the same commands as on v1, and v3's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.running import faxgate
from tests.conftest import pdf_document
from tests.dropbox_fax.sources import fixture_case
from tests.dropbox_fax.test_client import FAX_ID, Answer, FakeV3, answer


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch, clean_environment: Path) -> AsyncIterator[FakeV3]:
    fake = FakeV3()
    await fake.start()
    monkeypatch.setenv("FAXGATE_PROVIDER__KIND", "dropbox_fax")
    monkeypatch.setenv("FAXGATE_PROVIDER__API_KEY", "cli-test-api-key-0123")
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", fake.base_url)
    yield fake
    await fake.stop()


async def test_transmissions_list_and_one(
    server: FakeV3, capsys: pytest.CaptureFixture[str]
) -> None:
    server.on("GET", "/fax/list", answer(fixture_case("FaxListResponse.json")))
    server.on("GET", f"/fax/{FAX_ID}", answer(fixture_case("FaxResponse.json")))
    code, out, _ = await faxgate(capsys, "transmissions")
    assert code == 0
    assert FAX_ID in out
    assert "sent" in out.lower()
    code, out, _ = await faxgate(capsys, "transmissions", FAX_ID, "--json")
    assert code == 0
    assert json.loads(out)["fax_id"] == FAX_ID  # the provider's own shape, as on v1


async def test_lines_list_and_a_user_added(
    server: FakeV3, capsys: pytest.CaptureFixture[str]
) -> None:
    server.on("GET", "/fax_line/list", answer(fixture_case("FaxLineListResponse.json")))
    server.on("PUT", "/fax_line/add_user", answer(fixture_case("FaxLineResponse.json")))
    code, out, _ = await faxgate(capsys, "lines")
    assert code == 0
    assert "+1 415-555-7897" in out or "14155557897" in out
    code, out, _ = await faxgate(
        capsys, "lines", "add-user", "+1 415 555 7897", "--email", "ann@example.com"
    )
    assert code == 0
    assert "me@dropboxsign.com" in out
    assert server.seen[-1].body == {"number": "14155557897", "email_address": "ann@example.com"}


async def test_a_fax_downloaded_and_deleted(
    server: FakeV3, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pdf = pdf_document(1)
    server.on("GET", f"/fax/files/{FAX_ID}", Answer(200, pdf, content_type="application/pdf"))
    server.on("DELETE", f"/fax/{FAX_ID}", Answer(204, b"", content_type="text/plain"))
    code, out, _ = await faxgate(capsys, "fax", "download", FAX_ID, "-o", "copy.pdf")
    assert code == 0
    assert "copy.pdf" in out
    assert (tmp_path / "copy.pdf").read_bytes() == pdf
    code, _, err = await faxgate(capsys, "fax", "download", FAX_ID, "-o", "copy.pdf")
    assert code != 0
    assert "exists" in err
    code, out, _ = await faxgate(capsys, "fax", "delete", FAX_ID)
    assert code == 0
    assert FAX_ID in out
    assert ("DELETE", f"/fax/{FAX_ID}") in [(s.method, s.path) for s in server.seen]


async def test_the_account_shows_and_registers_the_events_url(
    server: FakeV3, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = {"account": {"account_id": "a" * 40, "email_address": "me@example.com"}}
    server.on("GET", "/account", answer(account))
    code, out, _ = await faxgate(capsys, "account")
    assert code == 0
    assert "me@example.com" in out
    code, _, err = await faxgate(capsys, "account", "--register-callbacks")
    assert code != 0
    assert "http.public_url" in err  # nowhere for the provider to post to yet
    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", "https://fax.example.com")
    monkeypatch.setenv("FAXGATE_HTTP__CALLBACK_TOKEN", "a-long-callback-token-0123456789")
    events = "https://fax.example.com/callbacks/a-long-callback-token-0123456789/events"
    server.on("PUT", "/account", answer({"account": account["account"] | {"callback_url": events}}))
    code, out, _ = await faxgate(capsys, "account", "--register-callbacks", "--json")
    assert code == 0
    assert json.loads(out)["callback_url"] == events
    assert server.seen[-1].body == {"callback_url": events}
    code, _, err = await faxgate(capsys, "account", "--outbound-url", "https://x.example/cb")
    assert code != 0
    assert "one callback URL" in err


async def test_a_refused_key_is_said_plainly(
    server: FakeV3, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = {"error": {"error_msg": "Unauthorized api key", "error_name": "unauthorized"}}
    server.on("GET", "/fax_line/list", answer(refused, 401))
    code, _, err = await faxgate(capsys, "lines")
    assert code != 0
    assert "refused the API key" in err


async def doctor_checks(capsys: pytest.CaptureFixture[str]) -> dict[str, list[dict[str, Any]]]:
    code, out, _ = await faxgate(capsys, "doctor", "--json")
    report = json.loads(out)
    assert report["ok"] is (code == 0)
    checks: dict[str, list[dict[str, Any]]] = {}
    for check in report["checks"]:
        checks.setdefault(check["check"], []).append(check)
    return checks


async def test_the_doctor_reads_the_v3_account_its_events_url_and_lines(
    server: FakeV3, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", "https://fax.example.com")
    monkeypatch.setenv("FAXGATE_HTTP__CALLBACK_TOKEN", "a-long-callback-token-0123456789")
    events = "https://fax.example.com/callbacks/a-long-callback-token-0123456789/events"
    account = {"account_id": "a" * 40, "email_address": "me@example.com"}
    server.on("GET", "/account", answer({"account": account | {"callback_url": events}}))
    server.on("GET", "/fax_line/list", answer(fixture_case("FaxLineListResponse.json")))
    checks = await doctor_checks(capsys)
    (provider,) = checks["provider"]
    assert (provider["state"], "me@example.com" in provider["detail"]) == ("ok", True)
    (callbacks,) = checks["callbacks"]
    assert callbacks["state"] == "ok"
    assert "a-long-callback-token" not in callbacks["detail"]  # the secret left out
    assert checks["fax lines"][0]["state"] == "ok"

    server.on("GET", "/account", answer({"account": account}))
    (callbacks,) = (await doctor_checks(capsys))["callbacks"]
    assert callbacks["state"] == "problem"
    assert "--register-callbacks" in callbacks["fix"]


async def test_the_doctor_names_the_api_key_when_it_is_refused(
    server: FakeV3, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = {"error": {"error_msg": "Unauthorized api key", "error_name": "unauthorized"}}
    server.on("GET", "/account", answer(refused, 401))
    checks = await doctor_checks(capsys)
    (provider,) = checks["provider"]
    assert provider["state"] == "problem"
    assert "provider.api_key" in provider["fix"]
    assert checks["fax lines"][0]["state"] == "skipped"
