"""Callbacks as the provider sends them, their retries and faults; inbound faxes."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from faxgate.hellofax.sandbox import CallbackAttempt, InjectionRefused, Sandbox, inject_inbound
from faxgate.sandbox.lifecycle import CALLBACK_RETRY_DELAYS
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_LINE,
    CallbackReceiver,
    ReceivedCallback,
    http_client,
    pdf_document,
    wait_for,
)

ACCOUNT = f"/Accounts/{SANDBOX_GUID}"
SEND = f"{ACCOUNT}/Transmissions"


async def set_callbacks(
    api: httpx.AsyncClient, receiver: CallbackReceiver, *, inbound: bool = False
) -> None:
    data = {"DefaultOutboundFaxCallbackUrl": receiver.url("/out")}
    if inbound:
        data["DefaultInboundFaxCallbackUrl"] = receiver.url("/in")
    assert (await api.post(ACCOUNT, data=data)).status_code == 200


async def send(api: httpx.AsyncClient, *to: str, **extra: Any) -> list[str]:
    data = {f"To[{n}]": number for n, number in enumerate(to)} | extra
    answer = await api.post(SEND, data=data, files={"file": ("a.pdf", pdf_document(2))})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    transmissions = body["Transmissions"] if "Transmissions" in body else [body["Transmission"]]
    return [t["Guid"] for t in transmissions]


async def received(receiver: CallbackReceiver, path: str, count: int) -> list[ReceivedCallback]:
    def arrived() -> list[ReceivedCallback] | None:
        callbacks = receiver.on(path)
        return callbacks if len(callbacks) >= count else None

    return await wait_for(arrived, what=f"{count} callback(s) on {path}")


async def test_a_final_status_is_posted_as_multipart_with_a_json_part(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    await set_callbacks(sandbox_api, callback_receiver)
    sent, busy = await send(sandbox_api, "14155550123", "14155550001")
    callbacks = await received(callback_receiver, "/out", 2)
    by_guid = {callback.transaction["Guid"]: callback for callback in callbacks}
    assert set(by_guid) == {sent, busy}
    for callback in callbacks:
        assert callback.content_type == "multipart/form-data"
        assert set(callback.fields) == {"json"}
        assert callback.files == {}
        assert set(json.loads(callback.fields["json"])) == {"Transaction"}
    ok = by_guid[sent].transaction
    assert (ok["StatusCode"], ok["ErrorCode"], ok["NumPagesBilled"]) == ("S", None, 2)
    assert ok["IsInbound"] is False
    # Answered, so the sent fax is removed, as the provider does; the failed one stays.
    await wait_for(
        lambda: [t for t in sandbox.inspect() if t.guid == sent and t.removed],
        what="the sent fax removed once its callback was answered",
    )
    gone = await sandbox_api.get(f"{SEND}/{sent}")
    assert (gone.status_code, gone.json()) == (
        404,
        {"status_code": 404, "message": "Transmission not found or not accessible."},
    )
    assert (await sandbox_api.get(f"{SEND}/{busy}")).json()["Transmission"]["StatusCode"] == "E"
    failed = by_guid[busy].transaction
    assert (failed["StatusCode"], failed["ErrorCode"], failed["NumPagesBilled"]) == ("E", "B", 0)


async def test_no_callback_is_made_without_a_callback_url(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    await send(sandbox_api, "14155550123")
    await wait_for(lambda: sandbox.inspect()[0].status == "S")
    # The callback would have been queued with the final status, in the same commit.
    assert sandbox.callback_attempts() == []


async def test_callbacks_are_retried_on_the_providers_schedule_until_200(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    await set_callbacks(sandbox_api, callback_receiver)
    callback_receiver.answer_with(500, 404)
    [guid] = await send(sandbox_api, "14155550123")
    callbacks = await received(callback_receiver, "/out", 3)
    assert {callback.transaction["Guid"] for callback in callbacks} == {guid}

    def three_attempts() -> list[CallbackAttempt] | None:
        attempts = sandbox.callback_attempts()
        return attempts if len(attempts) == 3 else None

    attempts = await wait_for(three_attempts, what="three logged attempts")
    assert [(a.attempt, a.reason, a.status) for a in attempts] == [
        (1, "delivery", 500),
        (2, "retry", 404),
        (3, "retry", 200),
    ]
    speed = sandbox.settings.speed
    for earlier, later, delay in zip(attempts, attempts[1:], CALLBACK_RETRY_DELAYS, strict=False):
        assert later.at - earlier.at >= 0.9 * delay * speed

    async with http_client() as control:
        log = (await control.get(sandbox.base_url.replace("/v1", "/_sandbox/callbacks"))).json()
    assert [(entry["attempt"], entry["status"]) for entry in log] == [(1, 500), (2, 404), (3, 200)]
    assert {entry["url"] for entry in log} == {callback_receiver.url("/out")}


async def test_a_receiver_that_cannot_be_reached_is_tried_again(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    unreachable = callback_receiver.url("/out")
    await callback_receiver.stop()
    await sandbox_api.post(ACCOUNT, data={"DefaultOutboundFaxCallbackUrl": unreachable})
    await send(sandbox_api, "14155550123")
    [first] = await wait_for(sandbox.callback_attempts, what="a failed attempt")
    assert first.status is None
    assert first.error


async def test_duplicate_callbacks(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    sandbox.faults.callback_copies = 3
    await set_callbacks(sandbox_api, callback_receiver)
    await send(sandbox_api, "14155550123")
    callbacks = await received(callback_receiver, "/out", 3)
    assert len({callback.fields["json"] for callback in callbacks}) == 1
    await wait_for(lambda: len(sandbox.callback_attempts()) == 3)
    assert [a.reason for a in sandbox.callback_attempts()] == [
        "delivery",
        "duplicate",
        "duplicate",
    ]


async def test_a_late_copy_follows_a_delivered_callback(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    sandbox.faults.callback_late_copy_after = 0.3
    await set_callbacks(sandbox_api, callback_receiver)
    await send(sandbox_api, "14155550123")
    first, late = await received(callback_receiver, "/out", 2)
    assert late.fields == first.fields
    assert late.at - first.at >= 0.3
    await wait_for(lambda: len(sandbox.callback_attempts()) == 2)
    assert [a.reason for a in sandbox.callback_attempts()] == ["delivery", "late"]


async def test_delayed_callbacks(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    sandbox.faults.callback_delay = 0.4
    await set_callbacks(sandbox_api, callback_receiver)
    sent_at = asyncio.get_running_loop().time()
    await send(sandbox_api, "14155550123")
    [callback] = await received(callback_receiver, "/out", 1)
    assert callback.at - sent_at >= 0.4


async def test_shuffled_callbacks_arrive_out_of_order(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    sandbox.faults.seed = 7
    sandbox.faults.callback_shuffle = True
    sandbox.faults.stall_faxes = True
    await set_callbacks(sandbox_api, callback_receiver)
    await send(sandbox_api, *(f"141555501{n:02d}" for n in range(20, 25)))
    sandbox.faults.stall_faxes = False  # all five end together
    callbacks = await received(callback_receiver, "/out", 5)
    arrived = [callback.transaction["Guid"] for callback in callbacks]
    await wait_for(lambda: len(sandbox.callback_attempts()) == 5)
    queued = [
        a.transmission_guid
        for a in sorted(sandbox.callback_attempts(), key=lambda a: a.callback_id)
    ]
    assert sorted(arrived) == sorted(queued)
    assert arrived != queued


# Inbound ---------------------------------------------------------------------------------


async def test_a_fax_to_an_own_line_also_arrives_as_inbound(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    await set_callbacks(sandbox_api, callback_receiver, inbound=True)
    [outbound] = await send(sandbox_api, SANDBOX_LINE, CoverPageMessage="Testing step 11")
    [sent] = await received(callback_receiver, "/out", 1)
    assert sent.transaction["Guid"] == outbound
    [arrived] = await received(callback_receiver, "/in", 1)

    inbound = arrived.transaction
    assert inbound["IsInbound"] is True
    assert inbound["StatusCode"] == "S"
    assert (inbound["To"], inbound["From"]) == (SANDBOX_LINE, SANDBOX_LINE)
    assert inbound["NumPagesBilled"] == 3  # two pages and the cover page
    [(name, (filename, content, content_type))] = arrived.files.items()
    assert name == "file"
    assert filename.endswith(".pdf")
    assert content_type == "application/pdf"
    assert len(PdfReader(io.BytesIO(content)).pages) == 3

    # The outbound one, sent and its callback answered, is removed; the inbound one stays.
    await wait_for(
        lambda: [t for t in sandbox.inspect() if t.guid == outbound and t.removed],
        what="the outbound fax removed once its callback was answered",
    )
    listed = (await sandbox_api.get(SEND)).json()["Transmissions"]
    assert {(t["Guid"], t["IsInbound"]) for t in listed} == {(inbound["Guid"], True)}
    assert [(t.is_inbound, t.removed) for t in sandbox.inspect()] == [(False, True), (True, False)]


async def test_an_injected_inbound_fax_reaches_the_inbound_url(
    tmp_path: Path,
    sandbox: Sandbox,
    sandbox_api: httpx.AsyncClient,
    callback_receiver: CallbackReceiver,
) -> None:
    await set_callbacks(sandbox_api, callback_receiver, inbound=True)
    document = tmp_path / "incoming.pdf"
    document.write_bytes(pdf_document(4))
    transmission = await inject_inbound(sandbox.base_url, SANDBOX_LINE, "+1 212 555 0199", document)
    assert transmission["IsInbound"] is True
    assert (transmission["To"], transmission["From"]) == (SANDBOX_LINE, "12125550199")
    assert transmission["NumPagesBilled"] == 4

    [arrived] = await received(callback_receiver, "/in", 1)
    assert arrived.transaction == transmission
    [(_, content, _)] = arrived.files.values()
    assert content == document.read_bytes()  # a lone PDF arrives as it was sent
    assert callback_receiver.on("/out") == []


@pytest.mark.parametrize(
    ("to", "name", "content", "expected"),
    [
        ("12125550000", "a.pdf", pdf_document(1), "not one of this account's fax lines"),
        (SANDBOX_LINE, "junk.pdf", b"%PDF-1.4 junk", "Not a readable document"),
    ],
)
async def test_an_injection_that_cannot_arrive_is_refused(
    tmp_path: Path, sandbox: Sandbox, to: str, name: str, content: bytes, expected: str
) -> None:
    document = tmp_path / name
    document.write_bytes(content)
    with pytest.raises(InjectionRefused, match=expected):
        await inject_inbound(sandbox.base_url, to, "12125550199", document)
    assert sandbox.inspect() == []
