"""The sandbox removes a sent fax as the provider says it does: when, which, and the switches."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate.hellofax.sandbox import FaultSettings, InspectedTransmission, Sandbox
from faxgate.sandbox.lifecycle import CALLBACK_RETRY_DELAYS
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    CallbackReceiver,
    http_client,
    pdf_document,
    sandbox_settings,
    wait_for,
)

ACCOUNT = f"/Accounts/{SANDBOX_GUID}"
SEND = f"{ACCOUNT}/Transmissions"
NOT_FOUND = {"status_code": 404, "message": "Transmission not found or not accessible."}
SENT_NUMBER, BUSY_NUMBER = "14155550123", "14155550001"


@pytest.fixture
def removal() -> str:
    return "sent"


@pytest.fixture
def retry_speed() -> float:
    # Callback retries a hundred times faster than the test speed: the schedule in ~0.6 s.
    return 5e-6


@pytest.fixture
async def sandbox(tmp_path: Path, removal: str, retry_speed: float) -> AsyncIterator[Sandbox]:
    settings = sandbox_settings(
        tmp_path / "sandbox", removal=removal, callback_retry_speed=retry_speed
    )
    async with Sandbox(settings) as running:
        yield running


async def send(api: httpx.AsyncClient, *to: str) -> list[str]:
    data = {f"To[{n}]": number for n, number in enumerate(to)}
    answer = await api.post(SEND, data=data, files={"file": ("a.pdf", pdf_document(1))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    transmissions = body["Transmissions"] if "Transmissions" in body else [body["Transmission"]]
    return [t["Guid"] for t in transmissions]


def inspected(sandbox: Sandbox, guid: str) -> InspectedTransmission:
    (item,) = [t for t in sandbox.inspect() if t.guid == guid]
    return item


async def ended(sandbox: Sandbox, *guids: str) -> None:
    def done() -> bool:
        return all(inspected(sandbox, guid).status in ("S", "E") for guid in guids)

    await wait_for(done, what="the faxes to end")


async def listed(api: httpx.AsyncClient) -> set[str]:
    body: dict[str, Any] = (await api.get(SEND)).json()
    return {t["Guid"] for t in body["Transmissions"]}


async def test_without_callbacks_a_sent_fax_is_removed_at_once_and_a_failed_one_stays(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sent, busy = await send(sandbox_api, SENT_NUMBER, BUSY_NUMBER)
    await ended(sandbox, sent, busy)
    gone = await sandbox_api.get(f"{SEND}/{sent}")
    assert (gone.status_code, gone.json()) == (404, NOT_FOUND)
    assert (await sandbox_api.get(f"{SEND}/{busy}")).status_code == 200
    assert await listed(sandbox_api) == {busy}
    assert (await sandbox_api.get(SEND)).json()["Total"] == 1
    # The inspection still sees both, and says which is gone.
    assert (inspected(sandbox, sent).status, inspected(sandbox, sent).removed) == ("S", True)
    assert inspected(sandbox, busy).removed is False


@pytest.mark.parametrize("removal", ["sent_and_failed"])
async def test_a_switch_removes_failed_faxes_too(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sent, busy = await send(sandbox_api, SENT_NUMBER, BUSY_NUMBER)
    await ended(sandbox, sent, busy)
    for guid in (sent, busy):
        assert (await sandbox_api.get(f"{SEND}/{guid}")).status_code == 404
    assert await listed(sandbox_api) == set()


@pytest.mark.parametrize("removal", ["nothing"])
async def test_a_switch_keeps_everything(sandbox: Sandbox, sandbox_api: httpx.AsyncClient) -> None:
    sent, busy = await send(sandbox_api, SENT_NUMBER, BUSY_NUMBER)
    await ended(sandbox, sent, busy)
    body = (await sandbox_api.get(f"{SEND}/{sent}")).json()
    assert body["Transmission"]["StatusCode"] == "S"
    assert await listed(sandbox_api) == {sent, busy}


@pytest.mark.parametrize("retry_speed", [5e-4])  # the first retry 0.45 s later: time to look
async def test_with_callbacks_a_sent_fax_stays_until_its_callback_is_answered(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    await sandbox_api.post(ACCOUNT, data={"DefaultOutboundFaxCallbackUrl": callback_receiver.url()})
    callback_receiver.answer_with(500, 503)  # two tries fail, the third is answered
    (sent,) = await send(sandbox_api, SENT_NUMBER)
    await wait_for(lambda: len(sandbox.callback_attempts()) >= 1, what="the first callback")
    # Not answered yet: still readable, as sent.
    body = (await sandbox_api.get(f"{SEND}/{sent}")).json()
    assert body["Transmission"]["StatusCode"] == "S"
    await wait_for(lambda: inspected(sandbox, sent).removed, what="removal after the 200")
    assert [a.status for a in sandbox.callback_attempts()] == [500, 503, 200]
    assert (await sandbox_api.get(f"{SEND}/{sent}")).status_code == 404


async def test_callbacks_lost_through_the_whole_schedule_are_given_up_then_the_fax_removed(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    await sandbox_api.post(ACCOUNT, data={"DefaultOutboundFaxCallbackUrl": callback_receiver.url()})
    sandbox.faults = FaultSettings(callbacks_lost=True)
    (sent,) = await send(sandbox_api, SENT_NUMBER)
    tries = len(CALLBACK_RETRY_DELAYS) + 1
    await wait_for(lambda: inspected(sandbox, sent).removed, what="removal after the last try")
    attempts = sandbox.callback_attempts()
    assert [a.attempt for a in attempts] == list(range(1, tries + 1))
    assert all(a.status is None and a.error for a in attempts)
    assert callback_receiver.on("/callback") == []  # none ever arrived
    # The provider's whole schedule was waited out (here a hundred thousand times faster).
    schedule = sum(CALLBACK_RETRY_DELAYS) * sandbox.settings.callback_retry_speed  # type: ignore[operator]
    assert attempts[-1].at - attempts[0].at >= schedule * 0.99


async def test_removal_outlives_a_restart_and_an_older_state_directory_learns_it(
    tmp_path: Path,
) -> None:
    settings = sandbox_settings(tmp_path / "state")
    async with (
        Sandbox(settings) as first,
        http_client(base_url=first.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as api,
    ):
        (sent,) = await send(api, SENT_NUMBER)
        await ended(first, sent)
    async with (
        Sandbox(settings) as second,
        http_client(base_url=second.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as api,
    ):
        assert (await api.get(f"{SEND}/{sent}")).status_code == 404
    # A state directory from before removal: the column is added, nothing is lost.
    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "sandbox.sqlite3") as conn:
        conn.execute(
            "CREATE TABLE transmissions (seq INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT NOT"
            " NULL UNIQUE, account_guid TEXT NOT NULL, to_number TEXT NOT NULL, from_number"
            " TEXT NOT NULL, is_inbound INTEGER NOT NULL, status TEXT NOT NULL, error_code"
            " TEXT, created_at REAL NOT NULL, updated_at REAL NOT NULL, pages INTEGER NOT"
            " NULL, cover_to TEXT, cover_from TEXT, cover_message TEXT, fingerprint TEXT NOT"
            " NULL, plan TEXT NOT NULL DEFAULT '[]', next_at REAL)"
        )
    conn.close()
    async with Sandbox(sandbox_settings(old)) as upgraded:
        assert upgraded.inspect() == []
