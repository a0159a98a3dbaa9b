"""The API commands against a running sandbox, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from faxgate.hellofax.sandbox import Sandbox
from tests.cli.running import as_hellofax_account, faxgate
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    pdf_document,
    wait_for,
)


@pytest.fixture(autouse=True)
def pointed_at_sandbox(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> Sandbox:
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", sandbox.base_url)
    return sandbox


async def test_account_shows_and_sets_callbacks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await faxgate(capsys, "account")
    assert code == 0
    assert "5a4d0b6e8c1f2a3b4c5d6e7f8091a2b3c4d5e6f7" in out
    code, _, _ = await faxgate(
        capsys, "account", "--outbound-url", "https://fax.example.com/cb/out"
    )
    assert code == 0
    code, out, _ = await faxgate(capsys, "account", "--json")
    assert json.loads(out)["default_outbound_fax_callback_url"] == "https://fax.example.com/cb/out"


async def test_lines_buy_list_delete(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await faxgate(capsys, "lines")
    assert code == 0
    assert "+1 415-555-0100" in out
    code, out, _ = await faxgate(capsys, "lines", "buy", "510", "--json")
    assert code == 0
    number = json.loads(out)["number"]
    assert number.startswith("1510")
    code, out, _ = await faxgate(capsys, "lines", "list", "--json")
    assert number in [line["number"] for line in json.loads(out)]
    code, out, _ = await faxgate(capsys, "lines", "delete", f"+{number}")
    assert code == 0
    assert "deleted" in out
    code, _, err = await faxgate(capsys, "lines", "delete", f"+{number}")
    assert code == 1
    assert err.startswith("faxgate: the provider:")


async def test_areacodes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await faxgate(capsys, "areacodes", "ca")
    assert code == 0
    assert "415" in out.split()
    code, out, _ = await faxgate(capsys, "areacodes", "NY", "--json")
    assert "212" in json.loads(out)


@pytest.mark.parametrize("removal", ["nothing"])  # listing sent faxes needs them kept
async def test_transmissions_list_one_and_all(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as http:
        for n in range(3):
            response = await http.post(
                f"{sandbox.base_url}/Accounts/{SANDBOX_GUID}/Transmissions",
                params={"To": f"1415555{n + 200:04d}"},
                files={"file": ("a.pdf", pdf_document(1), "application/pdf")},
            )
            response.raise_for_status()
    await wait_for(lambda: all(t.status == "S" for t in sandbox.inspect()), what="faxes sent")

    code, out, _ = await faxgate(capsys, "transmissions", "--page-size", "2")
    assert code == 0
    assert out.count("sent") == 2
    code, out, _ = await faxgate(capsys, "transmissions", "--all", "--page-size", "2", "--json")
    listed = json.loads(out)
    assert len(listed) == 3
    guid = listed[0]["Guid"]
    code, out, _ = await faxgate(capsys, "transmissions", guid, "--json")
    assert json.loads(out)["Guid"] == guid
    code, _, err = await faxgate(capsys, "transmissions", "0" * 40)
    assert code == 1
    assert "the provider:" in err


async def test_a_sent_fax_the_provider_removed_is_shown_as_its_404(
    capsys: pytest.CaptureFixture[str], sandbox: Sandbox
) -> None:
    async with httpx.AsyncClient(auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as http:
        response = await http.post(
            f"{sandbox.base_url}/Accounts/{SANDBOX_GUID}/Transmissions",
            params={"To": "14155550210"},
            files={"file": ("a.pdf", pdf_document(1), "application/pdf")},
        )
        guid = response.json()["Transmission"]["Guid"]
    await wait_for(lambda: all(t.removed for t in sandbox.inspect()), what="the fax removed")
    code, out, _ = await faxgate(capsys, "transmissions", "--all", "--json")
    assert (code, json.loads(out)) == (0, [])
    code, _, err = await faxgate(capsys, "transmissions", guid)
    assert code == 1
    assert "Transmission not found or not accessible." in err


async def test_register_callbacks_points_the_account_at_this_faxgate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_HTTP__PUBLIC_URL", "https://fax.example.com")
    monkeypatch.setenv("FAXGATE_HTTP__CALLBACK_TOKEN", "a-long-enough-secret-token")
    code, _, _ = await faxgate(capsys, "account", "--register-callbacks")
    assert code == 0
    code, out, _ = await faxgate(capsys, "account", "--json")
    account = json.loads(out)
    base = "https://fax.example.com/callbacks/a-long-enough-secret-token"
    assert account["default_inbound_fax_callback_url"] == f"{base}/inbound"
    assert account["default_outbound_fax_callback_url"] == f"{base}/outbound"


async def test_register_callbacks_needs_a_public_url_for_hellofax(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    as_hellofax_account(monkeypatch)
    code, _, err = await faxgate(capsys, "account", "--register-callbacks")
    assert code == 1
    assert "http.public_url" in err
