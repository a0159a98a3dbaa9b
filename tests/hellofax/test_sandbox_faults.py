"""Faults on demand, the control API, and the inspection that proves nothing went twice."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.hellofax.sandbox.shapes import RATE_LIMIT_MESSAGE
from faxgate.sandbox.control import is_loopback
from tests.conftest import SANDBOX_GUID, http_client, pdf_document, wait_for

ACCOUNT = f"/Accounts/{SANDBOX_GUID}"
SEND = f"{ACCOUNT}/Transmissions"
DOCUMENT = pdf_document(2)


def control_url(sandbox: Sandbox, endpoint: str) -> str:
    return sandbox.base_url.removesuffix("/v1") + "/_sandbox/" + endpoint


async def send(api: httpx.AsyncClient, to: str = "14155550123", **kwargs: Any) -> httpx.Response:
    return await api.post(SEND, params={"To": to}, files={"file": ("a.pdf", DOCUMENT)}, **kwargs)


async def test_a_share_of_requests_is_answered_500_or_503(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.error_rate = 1.0
    sandbox.faults.error_statuses = [500]
    internal = await sandbox_api.get(ACCOUNT)
    assert internal.status_code == 500
    assert internal.json()["error"]["code"] == 500

    sandbox.faults.error_statuses = [503]
    unavailable = await send(sandbox_api)
    assert unavailable.status_code == 503
    assert unavailable.headers["Content-Type"].startswith("text/html")
    assert sandbox.inspect() == []  # refused before it was handled

    async with http_client() as control:  # the control API is never faulted
        assert (await control.get(control_url(sandbox, "transmissions"))).status_code == 200


async def test_errors_can_strike_sends_only(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults = FaultSettings(error_rate=1.0, errors_only_for_sends=True)
    assert (await sandbox_api.get(ACCOUNT)).status_code == 200
    assert (await send(sandbox_api)).status_code in (500, 503)


async def test_a_seed_makes_the_faults_repeatable(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    async def statuses() -> list[int]:
        return [(await sandbox_api.get(ACCOUNT)).status_code for _ in range(30)]

    async with http_client() as control:
        await control.post(control_url(sandbox, "faults"), json={"seed": 11, "error_rate": 0.5})
        first = await statuses()
        await control.post(control_url(sandbox, "faults"), json={"seed": 11})
        second = await statuses()
    assert first == second
    assert {200, 500, 503} == set(first)


async def test_slow_answers_leave_the_fax_accepted(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.delay = 0.5
    sandbox.faults.delay_only_for_sends = True
    assert (await sandbox_api.get(ACCOUNT)).status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        await send(sandbox_api, timeout=0.1)
    [accepted] = sandbox.inspect()
    assert accepted.to == "14155550123"


async def test_a_connection_dropped_after_the_upload_leaves_the_fax_accepted(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.drop_after_upload_next = 1
    with pytest.raises(httpx.RemoteProtocolError):
        await send(sandbox_api)
    [accepted] = sandbox.inspect()
    assert accepted.status in ("P", "T", "S")
    assert sandbox.faults.drop_after_upload_next == 0

    assert (await send(sandbox_api)).status_code == 200  # only the one was dropped
    assert len(sandbox.inspect()) == 2


async def test_a_drop_rate_drops_every_send_at_one(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.drop_after_upload_rate = 1.0
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            await send(sandbox_api)
    assert len(sandbox.inspect()) == 2
    assert (await sandbox_api.get(ACCOUNT)).status_code == 200  # not a send: answered


async def test_a_429_storm(sandbox: Sandbox, sandbox_api: httpx.AsyncClient) -> None:
    sandbox.faults.rate_limit_next = 2
    for _ in range(2):
        refused = await send(sandbox_api)
        assert refused.status_code == 429
        assert refused.text == RATE_LIMIT_MESSAGE
    assert (await send(sandbox_api)).status_code == 200
    assert len(sandbox.inspect()) == 1


async def test_fault_switches_over_http_merge_validate_and_reset(sandbox: Sandbox) -> None:
    url = control_url(sandbox, "faults")
    async with http_client() as control:
        await control.post(url, json={"error_rate": 0.25})
        merged = (await control.post(url, json={"callback_copies": 2})).json()
        assert (merged["error_rate"], merged["callback_copies"]) == (0.25, 2)
        assert (await control.get(url)).json() == merged
        assert sandbox.faults.callback_copies == 2

        bad_switches: list[Any] = [
            {"no_such_switch": 1},
            {"error_rate": 2},
            {"error_statuses": [200]},
            [],
        ]
        for bad in bad_switches:
            answer = await control.post(url, json=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["message"]

        reset = (await control.delete(url)).json()
        assert reset == FaultSettings().model_dump(mode="json")
        assert sandbox.faults == FaultSettings()


def test_the_control_api_answers_loopback_only() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("192.0.2.10")
    assert not is_loopback(None)
    assert not is_loopback("not an address")


async def test_inspection_counts_the_same_document_to_the_same_number(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    twice = [await send(sandbox_api, "14155550123") for _ in range(2)]
    await send(sandbox_api, "12125550123")  # same document, another number
    other = await sandbox_api.post(
        SEND, params={"To": "14155550123"}, files={"file": ("b.txt", b"another\n")}
    )
    assert other.status_code == 200

    async with http_client() as control:
        seen = (await control.get(control_url(sandbox, "transmissions"))).json()
        duplicates = (await control.get(control_url(sandbox, "duplicates"))).json()

    assert [entry["to"] for entry in seen] == ["14155550123"] * 2 + ["12125550123", "14155550123"]
    first = seen[0]
    assert first["from"] == "14155550100"
    assert first["files"] == [
        {
            "name": "a.pdf",
            "sha256": hashlib.sha256(DOCUMENT).hexdigest(),
            "pages": 2,
            "size": len(DOCUMENT),
        }
    ]
    assert [entry["same_document_to_same_number"] for entry in seen] == [2, 2, 1, 1]

    guids = [answer.json()["Transmission"]["Guid"] for answer in twice]
    assert duplicates == [
        {
            "to": "14155550123",
            "document_sha256": first["document_sha256"],
            "count": 2,
            "guids": guids,
        }
    ]
    assert [d.model_dump() for d in sandbox.duplicates()] == duplicates


async def test_stalled_faxes_wait_until_released(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.stall_faxes = True
    guid = (await send(sandbox_api)).json()["Transmission"]["Guid"]
    assert (await sandbox_api.get(f"{SEND}/{guid}")).json()["Transmission"]["StatusCode"] == "P"
    async with http_client() as control:
        await control.post(control_url(sandbox, "faults"), json={"stall_faxes": False})
    await wait_for(lambda: sandbox.inspect()[0].status == "S")


async def test_one_call_per_line_makes_a_second_call_to_a_number_in_use_busy(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.one_call_per_line = True
    first = (await send(sandbox_api, "14155550123")).json()["Transmission"]["Guid"]
    second = (await send(sandbox_api, "14155550123")).json()["Transmission"]["Guid"]
    elsewhere = (await send(sandbox_api, "12125550123")).json()["Transmission"]["Guid"]

    def ended() -> dict[str, tuple[str, str | None]] | None:
        seen = {tx.guid: (tx.status, tx.error_code) for tx in sandbox.inspect()}
        return seen if all(status in ("S", "E") for status, _ in seen.values()) else None

    outcomes = await wait_for(ended)
    assert outcomes == {first: ("S", None), second: ("E", "B"), elsewhere: ("S", None)}
    # The line is free again once the first call has ended.
    again = (await send(sandbox_api, "14155550123")).json()["Transmission"]["Guid"]
    assert (await wait_for(ended))[again] == ("S", None)
