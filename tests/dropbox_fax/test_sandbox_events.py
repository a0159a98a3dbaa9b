"""The v3 sandbox's events: signed, multipart with a `json` field, retried until the answer
phrase comes back; inbound faxes announced and downloaded by `fax_id`.

Each event is read with faxgate's own reader and verifier (faxgate.dropbox_fax.events).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.dropbox_fax.codes import FaxStatus
from faxgate.dropbox_fax.events import EVENT_ANSWER, PAYLOAD_FIELD, Callback, Verdict, verify_event
from faxgate.dropbox_fax.sandbox import DEFAULT_API_KEY, DropboxFaxSandbox, inject_inbound
from faxgate.sandbox.faults import FaultSettings
from faxgate.sandbox.inject import InjectionRefused
from tests.conftest import (
    SANDBOX_LINE,
    CallbackReceiver,
    ReceivedCallback,
    http_client,
    pdf_document,
    sandbox_settings,
    wait_for,
)


@pytest.fixture
async def v3(tmp_path: Path) -> AsyncIterator[DropboxFaxSandbox]:
    async with DropboxFaxSandbox(sandbox_settings(tmp_path / "v3")) as running:
        yield running


@pytest.fixture
async def api(v3: DropboxFaxSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(base_url=v3.base_url, auth=(DEFAULT_API_KEY, "")) as client:
        yield client


@pytest.fixture
async def events(api: httpx.AsyncClient, callback_receiver: CallbackReceiver) -> CallbackReceiver:
    callback_receiver.ok_text = EVENT_ANSWER
    answer = await api.put("/account", json={"callback_url": callback_receiver.url("/events")})
    assert answer.status_code == 200
    return callback_receiver


async def send(api: httpx.AsyncClient, recipient: str) -> str:
    files = [("files[]", ("a.pdf", pdf_document(1), "application/pdf"))]
    answer = await api.post("/fax/send", data={"recipient": recipient}, files=files)
    assert answer.status_code == 200, answer.text
    fax_id: str = answer.json()["fax"]["fax_id"]
    return fax_id


async def arrived(receiver: CallbackReceiver, count: int) -> list[ReceivedCallback]:
    def enough() -> list[ReceivedCallback] | None:
        return receiver.received if len(receiver.received) >= count else None

    return await wait_for(enough, what=f"{count} event(s)")


def read(callback: ReceivedCallback) -> Callback:
    assert callback.content_type == "multipart/form-data"
    assert set(callback.fields) == {PAYLOAD_FIELD}
    return Callback.from_api(callback.fields[PAYLOAD_FIELD])


async def test_each_result_is_a_signed_event_that_carries_the_fax(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient, events: CallbackReceiver
) -> None:
    sent = await send(api, "14155550123")
    busy = await send(api, "14155550001")
    by_fax = {event.fax.id: event for event in map(read, await arrived(events, 2)) if event.fax}
    assert set(by_fax) == {sent, busy}
    for event in by_fax.values():
        assert verify_event(DEFAULT_API_KEY, event.event) is Verdict.VERIFIED
        assert verify_event("another-key", event.event) is Verdict.MISMATCH
        assert event.event.is_fax_event
        assert event.account_guid == v3.settings.account_guid
        assert event.event.event_metadata["related_fax_id"] == event.fax.id  # type: ignore[union-attr]
    ok, failed = by_fax[sent], by_fax[busy]
    assert ok.event.event_type == "fax_sent"
    assert [(r.status, r.outcome) for r in ok.reports] == [
        (FaxStatus.SUCCESS, (StatusCode.SENT, None))
    ]
    assert failed.event.event_type == "fax_busy"
    assert failed.reports[0].outcome == (StatusCode.ERROR, ErrorCode.BUSY)
    # Each was received (answered with the phrase): delivered once, never retried.
    await wait_for(
        lambda: len(v3.callback_attempts()) == 2 and all(
            a.status == 200 for a in v3.callback_attempts()),
        what="both attempts logged",
    )  # fmt: skip
    assert {a.reason for a in v3.callback_attempts()} == {"delivery"}
    # Answered, so the sent fax is removed as on v1; the failed one stays.
    await wait_for(
        lambda: [t for t in v3.inspect() if t.guid == sent and t.removed],
        what="the sent fax removed once its event was received",
    )
    assert (await api.get(f"/fax/{sent}")).status_code == 404
    assert (await api.get(f"/fax/{busy}")).status_code == 200


async def test_an_answer_without_the_phrase_is_retried(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient, callback_receiver: CallbackReceiver
) -> None:
    callback_receiver.ok_text = "thanks"  # a 200, but not the answer v3 asks for
    await api.put("/account", json={"callback_url": callback_receiver.url("/events")})
    await send(api, "14155550123")
    first, second = await arrived(callback_receiver, 2)
    assert read(first).event.event_hash == read(second).event.event_hash  # the same event
    # The sandbox records an attempt once its answer is read: after the receiver saw it.
    attempts = await wait_for(
        lambda: v3.callback_attempts()[:2] if len(v3.callback_attempts()) >= 2 else None,
        what="both attempts recorded",
    )
    assert [attempt.reason for attempt in attempts] == ["delivery", "retry"]


async def test_an_inbound_fax_is_announced_and_downloaded_by_its_id(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient, events: CallbackReceiver, tmp_path: Path
) -> None:
    document = tmp_path / "incoming.pdf"
    document.write_bytes(pdf_document(2))
    fax = await inject_inbound(v3.base_url, SANDBOX_LINE, "+1 212 555 0199", document)
    assert (fax["sender"], fax["transmissions"][0]["recipient"]) == ("12125550199", SANDBOX_LINE)
    assert fax["files_url"] == f"{v3.base_url}/fax/files/{fax['fax_id']}"

    (callback,) = await arrived(events, 1)
    assert callback.files == {}  # no file part: the document is fetched by fax_id
    event = read(callback)
    assert event.event.event_type == "fax_received"
    assert verify_event(DEFAULT_API_KEY, event.event) is Verdict.VERIFIED
    assert event.fax is not None
    assert event.fax.id == fax["fax_id"]
    assert event.reports[0].status is FaxStatus.SUCCESS
    assert event.fax.files_url == f"{v3.base_url}/fax/files/{fax['fax_id']}"

    pdf = await api.get(f"/fax/files/{fax['fax_id']}")
    assert pdf.status_code == 200
    assert pdf.content == document.read_bytes()  # a lone PDF arrives as it was sent
    assert len(PdfReader(io.BytesIO(pdf.content)).pages) == 2
    (seen,) = v3.inspect()
    assert (seen.is_inbound, seen.guid) == (True, fax["fax_id"])


async def test_an_inbound_fax_to_a_number_not_ours_is_refused(
    v3: DropboxFaxSandbox, tmp_path: Path
) -> None:
    document = tmp_path / "incoming.pdf"
    document.write_bytes(pdf_document(1))
    with pytest.raises(InjectionRefused, match="not one of this account's fax lines"):
        await inject_inbound(v3.base_url, "14155559999", "12125550199", document)


async def test_a_copied_event_is_the_same_signed_event(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient, events: CallbackReceiver
) -> None:
    v3.faults = FaultSettings(callback_copies=2)
    await send(api, "14155550123")
    first, copy = (read(callback) for callback in await arrived(events, 2))
    assert first.event == copy.event  # a replay: the same time, type and hash
    assert verify_event(DEFAULT_API_KEY, copy.event) is Verdict.VERIFIED


async def test_a_restart_keeps_faxes_titles_and_the_callback_url(tmp_path: Path) -> None:
    settings = sandbox_settings(tmp_path / "v3", removal="nothing")
    async with DropboxFaxSandbox(settings) as first:
        first.set_callback_url("http://127.0.0.1:9/events")
        async with http_client(base_url=first.base_url, auth=(DEFAULT_API_KEY, "")) as client:
            files = [("files[]", ("a.pdf", pdf_document(1), "application/pdf"))]
            data = {"recipient": "14155550123", "title": "Kept", "test_mode": "true"}
            fax_id = (await client.post("/fax/send", data=data, files=files)).json()["fax"][
                "fax_id"
            ]
    async with (
        DropboxFaxSandbox(settings.model_copy(update={"port": 0})) as second,
        http_client(base_url=second.base_url, auth=(DEFAULT_API_KEY, "")) as client,
    ):
        fax = (await client.get(f"/fax/{fax_id}")).json()["fax"]
        assert (fax["title"], fax["test_mode"]) == ("Kept", True)
        account = (await client.get("/account")).json()["account"]
        assert account["callback_url"] == "http://127.0.0.1:9/events"
