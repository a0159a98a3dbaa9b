"""The v3 sandbox over real HTTP: auth, faxes, lists, files, deletes, lines, limits, faults.

Every answer is read with faxgate's own v3 models (faxgate.dropbox_fax.models), and its
keys are checked against the description's test fixtures, so the sandbox and the client
read the same shapes.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pypdf import PdfReader

from faxgate.dropbox_fax.codes import FaxStatus
from faxgate.dropbox_fax.models import (
    ApiError,
    FaxAnswer,
    FaxLineAnswer,
    FaxLinePage,
    FaxPage,
    area_codes_from_api,
)
from faxgate.dropbox_fax.sandbox import DEFAULT_API_KEY, DropboxFaxSandbox
from faxgate.sandbox.faults import FaultSettings
from tests.conftest import SANDBOX_LINE, http_client, pdf_document, sandbox_settings, wait_for
from tests.dropbox_fax.sources import fixture_case

AUTH = (DEFAULT_API_KEY, "")


def v3_client(sandbox: DropboxFaxSandbox, auth: Any = AUTH) -> httpx.AsyncClient:
    return http_client(base_url=sandbox.base_url, auth=auth)


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {"removal": "nothing"}


@pytest.fixture
async def v3(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[DropboxFaxSandbox]:
    async with DropboxFaxSandbox(sandbox_settings(tmp_path / "v3", **overrides)) as running:
        yield running


@pytest.fixture
async def api(v3: DropboxFaxSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with v3_client(v3) as client:
        yield client


async def send(
    api: httpx.AsyncClient, recipient: str, document: bytes | None = None, **fields: str
) -> dict[str, Any]:
    files = [("files[]", ("a.pdf", document or pdf_document(2), "application/pdf"))]
    answer = await api.post("/fax/send", data={"recipient": recipient, **fields}, files=files)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def ended(api: httpx.AsyncClient, fax_id: str) -> FaxAnswer:
    async def status() -> FaxAnswer | None:
        answer = FaxAnswer.from_api((await api.get(f"/fax/{fax_id}")).text)
        code = answer.fax.transmissions[0].status
        return None if code is FaxStatus.TRANSMITTING else answer

    return await wait_for(status, what=f"fax {fax_id} ended")


def refusal(answer: httpx.Response, status: int, name: str) -> ApiError:
    assert answer.status_code == status, answer.text
    error = ApiError.from_api(answer.text)
    assert error.error_name == name
    assert error.error_msg
    assert set(answer.json()) == {"error"}
    return error


# Auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth", [None, ("wrong-key", ""), (DEFAULT_API_KEY, "a-password")], ids=str
)
async def test_only_the_api_key_with_an_empty_password_is_let_in(
    v3: DropboxFaxSandbox, auth: Any
) -> None:
    async with v3_client(v3, auth) as client:
        answer = await client.get("/fax/list")
    refusal(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


# Sending and reading faxes ---------------------------------------------------------------


async def test_a_send_answers_the_fax_as_the_description_shapes_it(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    v3.faults = FaultSettings(stall_faxes=True)
    body = await send(
        api, "+1 415 555 0123", title="Invoice 7", cover_page_to="Ann", cover_page_message="Hi"
    )
    sent = FaxAnswer.from_api(body)
    fixture = fixture_case("FaxResponse.json")["fax"]
    assert set(fixture) <= set(body["fax"]), set(fixture) - set(body["fax"])
    assert body["warnings"] == []
    assert len(sent.fax.fax_id) == 40
    assert (sent.fax.title, sent.fax.sender, sent.fax.message) == ("Invoice 7", SANDBOX_LINE, "Hi")
    (transmission,) = sent.fax.transmissions
    assert (transmission.recipient, transmission.status) == ("14155550123", FaxStatus.TRANSMITTING)
    assert "sent_at" not in body["fax"]["transmissions"][0]  # none while transmitting
    assert sent.fax.files_url == f"{v3.base_url}/fax/files/{sent.fax.fax_id}"

    v3.faults = FaultSettings()
    done = await ended(api, sent.fax.fax_id)
    assert done.fax.transmissions[0].status is FaxStatus.SUCCESS
    assert done.fax.transmissions[0].sent_at is not None
    (seen,) = v3.inspect()
    assert (seen.guid, seen.title, seen.pages_billed) == (sent.fax.fax_id, "Invoice 7", 3)


async def test_the_outcome_follows_the_number_as_on_v1(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    expected = {
        "14155550001": FaxStatus.ERROR_BUSY,
        "14155550002": FaxStatus.ERROR_NO_ANSWER,
        "14155550003": FaxStatus.ERROR_BAD_DESTINATION,
        "14155550004": FaxStatus.ERROR_DISCONNECTED,
        "14155550005": FaxStatus.ERROR_COULD_NOT_FAX,
        "14155550006": FaxStatus.ERROR_UNKNOWN,
        "14155550123": FaxStatus.SUCCESS,
    }
    ids = {number: (await send(api, number))["fax"]["fax_id"] for number in expected}
    unreadable = await send(api, "14155550124", b"not a document at all \x00\x01")
    for number, fax_id in ids.items():
        outcome = (await ended(api, fax_id)).fax.transmissions[0]
        assert outcome.status is expected[number], number
    broken = await ended(api, unreadable["fax"]["fax_id"])
    assert broken.fax.transmissions[0].status is FaxStatus.ERROR_FILE


async def test_an_unconfirmed_account_puts_faxes_on_hold(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    v3.set_confirmed(False)
    fax_id = (await send(api, "14155550123"))["fax"]["fax_id"]
    held = await ended(api, fax_id)
    assert held.fax.transmissions[0].status is FaxStatus.ON_HOLD
    assert held.fax.transmissions[0].outcome is not None


async def test_a_fax_to_an_email_address_is_sent(api: httpx.AsyncClient) -> None:
    body = await send(api, "Front.Desk@Example.com")
    assert body["fax"]["transmissions"][0]["recipient"] == "front.desk@example.com"
    done = await ended(api, body["fax"]["fax_id"])
    assert done.fax.transmissions[0].status is FaxStatus.SUCCESS
    refusal(
        await api.post(
            "/fax/send",
            data={"recipient": "not@an-address"},
            files=[("files[]", ("a.pdf", pdf_document(1)))],
        ),
        400,
        "bad_request",
    )


async def test_test_mode_is_kept_and_bills_nothing(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    body = await send(api, "14155550123", test_mode="1")
    assert body["fax"]["test_mode"] is True
    await ended(api, body["fax"]["fax_id"])
    (seen,) = v3.inspect()
    assert (seen.test_mode, seen.status, seen.pages_billed) == (True, "S", 0)


async def test_a_send_is_refused_in_the_v3_error_shape(api: httpx.AsyncClient) -> None:
    no_recipient = await api.post("/fax/send", files=[("files[]", ("a.pdf", pdf_document(1)))])
    assert "recipient" in refusal(no_recipient, 400, "bad_request").error_msg
    no_file = await api.post("/fax/send", data={"recipient": "14155550123"})
    refusal(no_file, 400, "bad_request")
    both = await api.post(
        "/fax/send",
        data={"recipient": "14155550123", "file_urls[]": "http://127.0.0.1:9/a.pdf"},
        files=[("files[]", ("a.pdf", pdf_document(1)))],
    )
    assert "not both" in refusal(both, 400, "bad_request").error_msg
    not_a_line = await api.post(
        "/fax/send",
        data={"recipient": "14155550123", "sender": "14155559999"},
        files=[("files[]", ("a.pdf", pdf_document(1)))],
    )
    refusal(not_a_line, 400, "bad_request")
    refusal(await api.get("/fax/" + "0" * 40), 404, "not_found")


async def test_file_urls_are_downloaded_by_the_provider(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    document = pdf_document(3)
    served = await _serve_file(document)
    try:
        answer = await api.post(
            "/fax/send", json={"recipient": "14155550123", "file_urls": [served.url]}
        )
    finally:
        await served.stop()
    assert answer.status_code == 200, answer.text
    (seen,) = v3.inspect()
    assert seen.files[0].size == len(document)
    assert seen.files[0].pages == 3


async def test_the_list_pages_from_one_with_list_info(api: httpx.AsyncClient) -> None:
    ids = [(await send(api, f"1415555{n:04d}"))["fax"]["fax_id"] for n in range(120, 125)]
    first = FaxPage.from_api((await api.get("/fax/list", params={"page_size": 2})).text)
    assert [fax.fax_id for fax in first.faxes] == ids[::-1][:2]  # newest first
    info = first.list_info
    assert (info.page, info.page_size, info.num_pages, info.num_results) == (1, 2, 3, 5)
    last = FaxPage.from_api((await api.get("/fax/list", params={"page": 3, "page_size": 2})).text)
    assert [fax.fax_id for fax in last.faxes] == ids[:1]
    assert last.list_info.is_last
    fixture = fixture_case("FaxListResponse.json")
    body = (await api.get("/fax/list")).json()
    assert set(fixture) <= set(body)
    assert set(fixture["list_info"]) == set(body["list_info"])
    refusal(await api.get("/fax/list", params={"page": 0}), 400, "bad_request")
    refusal(await api.get("/fax/list", params={"page_size": 101}), 400, "bad_request")


async def test_files_download_the_pdf_and_a_delete_leaves_410(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    fax_id = (await send(api, "14155550123", pdf_document(2)))["fax"]["fax_id"]
    v3.faults = FaultSettings(stall_faxes=True)
    busy = await send(api, "14155550124")
    refusal(await api.delete(f"/fax/{busy['fax']['fax_id']}"), 400, "bad_request")
    v3.faults = FaultSettings()
    await ended(api, fax_id)

    pdf = await api.get(f"/fax/files/{fax_id}")
    assert pdf.status_code == 200
    assert pdf.headers["Content-Type"] == "application/pdf"
    assert len(PdfReader(io.BytesIO(pdf.content)).pages) == 2

    deleted = await api.delete(f"/fax/{fax_id}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    refusal(await api.get(f"/fax/{fax_id}"), 410, "deleted")
    refusal(await api.get(f"/fax/files/{fax_id}"), 410, "deleted")
    listed = FaxPage.from_api((await api.get("/fax/list")).text)
    assert fax_id not in [fax.fax_id for fax in listed.faxes]
    assert [t.deleted for t in v3.inspect() if t.guid == fax_id] == [True]


@pytest.mark.parametrize("overrides", [{"removal": "sent"}])
async def test_a_sent_fax_is_removed_as_on_v1(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    fax_id = (await send(api, "14155550123"))["fax"]["fax_id"]
    failed = (await send(api, "14155550001"))["fax"]["fax_id"]
    await wait_for(
        lambda: [t for t in v3.inspect() if t.guid == fax_id and t.removed],
        what="the sent fax removed",
    )
    refusal(await api.get(f"/fax/{fax_id}"), 404, "not_found")
    assert (await ended(api, failed)).fax.transmissions[0].status is FaxStatus.ERROR_BUSY


# Rate limits and faults ------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"rate_limit": 3, "test_mode_rate_limit": 1}])
async def test_the_rate_limit_answers_429_exceeded_rate_with_its_headers(
    api: httpx.AsyncClient,
) -> None:
    first = await api.get("/fax/list")
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert int(first.headers["X-Ratelimit-Reset"]) >= int(time.time())
    await send(api, "14155550123", test_mode="true")
    test_mode = await api.post(
        "/fax/send",
        data={"recipient": "14155550123", "test_mode": "true"},
        files=[("files[]", ("a.pdf", pdf_document(1)))],
    )
    refusal(test_mode, 429, "exceeded_rate")
    assert test_mode.headers["X-RateLimit-Limit"] == "1"
    assert test_mode.headers["X-RateLimit-Remaining"] == "0"
    refused = await api.get("/fax/list")
    refusal(refused, 429, "exceeded_rate")
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    reset = int(refused.headers["X-Ratelimit-Reset"])
    assert time.time() < reset <= time.time() + 61


async def test_faults_answer_in_the_v3_shape(v3: DropboxFaxSandbox, api: httpx.AsyncClient) -> None:
    v3.faults = FaultSettings(rate_limit_next=1)
    storm = await api.post(
        "/fax/send",
        data={"recipient": "14155550123"},
        files=[("files[]", ("a.pdf", pdf_document(1)))],
    )
    refusal(storm, 429, "exceeded_rate")
    v3.faults = FaultSettings(error_rate=1.0, error_statuses=[500])
    failed = await api.get("/fax/list")
    assert failed.status_code == 500
    assert ApiError.from_api(failed.text).error_msg
    assert v3.inspect() == []


# Account and fax lines -------------------------------------------------------------------


async def test_the_account_carries_the_callback_url(api: httpx.AsyncClient) -> None:
    before = (await api.get("/account")).json()["account"]
    assert before["callback_url"] is None
    url = "https://example.com/events"
    after = (await api.put("/account", json={"callback_url": url})).json()["account"]
    assert after["callback_url"] == url
    refusal(await api.put("/account", json={"callback_url": "ftp://x"}), 400, "bad_request")


async def test_fax_lines_area_codes_create_get_list_users_delete(api: httpx.AsyncClient) -> None:
    codes = area_codes_from_api((await api.get("/fax_line/area_codes", params={
        "country": "US", "state": "CA"})).text)  # fmt: skip
    assert "415" in codes
    refusal(await api.get("/fax_line/area_codes"), 400, "bad_request")
    assert (await api.get("/fax_line/area_codes", params={"country": "CA"})).json() == {
        "area_codes": []
    }

    created = await api.post("/fax_line/create", json={"area_code": 510, "country": "US"})
    line = FaxLineAnswer.from_api(created.text).fax_line
    assert line.number.startswith("1510555")
    assert set(fixture_case("FaxLineResponse.json")["fax_line"]) == set(created.json()["fax_line"])
    got = FaxLineAnswer.from_api((await api.get("/fax_line", params={"number": line.number})).text)
    assert got.fax_line.number == line.number

    listed = FaxLinePage.from_api((await api.get("/fax_line/list")).text)
    assert [item.number for item in listed.fax_lines] == [SANDBOX_LINE, line.number]
    assert listed.list_info.num_results == 2

    added = await api.put(
        "/fax_line/add_user", json={"number": line.number, "email_address": "Bo@Example.com"}
    )
    emails = [a.email_address for a in FaxLineAnswer.from_api(added.text).fax_line.accounts]
    assert "bo@example.com" in emails
    removed = await api.put(
        "/fax_line/remove_user", json={"number": line.number, "email_address": "bo@example.com"}
    )
    emails = [a.email_address for a in FaxLineAnswer.from_api(removed.text).fax_line.accounts]
    assert "bo@example.com" not in emails

    gone = await api.request("DELETE", "/fax_line", json={"number": line.number})
    assert gone.status_code == 200
    refusal(await api.get("/fax_line", params={"number": line.number}), 404, "not_found")


class _Served:
    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self._runner = runner
        self.url = url

    async def stop(self) -> None:
        await self._runner.cleanup()


async def _serve_file(content: bytes) -> _Served:
    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=content, content_type="application/pdf")

    app = web.Application()
    app.router.add_get("/doc.pdf", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return _Served(runner, f"http://127.0.0.1:{runner.addresses[0][1]}/doc.pdf")


async def test_the_control_routes_serve_the_v3_sandbox_too(
    v3: DropboxFaxSandbox, api: httpx.AsyncClient
) -> None:
    control = v3.base_url.replace("/v3", "/_sandbox/")
    async with http_client() as client:  # no credentials: loopback only
        merged = await client.post(control + "faults", json={"rate_limit_next": 1})
        assert merged.json()["rate_limit_next"] == 1
        refusal(
            await api.post(
                "/fax/send",
                data={"recipient": "14155550123"},
                files=[("files[]", ("a.pdf", pdf_document(1)))],
            ),
            429,
            "exceeded_rate",
        )
        await send(api, "14155550123")
        listed = (await client.get(control + "transmissions")).json()
    assert [(item["to"], item["test_mode"]) for item in listed] == [("14155550123", False)]
