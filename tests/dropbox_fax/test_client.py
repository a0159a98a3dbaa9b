"""The v3 client over real HTTP on loopback, against a server that answers with the
description's own examples and test fixtures (fixtures/SOURCES.md)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import BodyPartReader, web

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.domain.provider import (
    Ambiguous,
    BadResponse,
    FaxProvider,
    NotSent,
    OutgoingFax,
    RateLimited,
    Refused,
    Unavailable,
    Upload,
)
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.ratelimit import RateLimiter
from tests.conftest import pdf_document
from tests.dropbox_fax.sources import example_text, fixture_case

API_KEY = "test-api-key-0123456789"
FAX_ID = "c2e9691c85d9d6fa6ae773842e3680b2b8650f1d"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorization: str
    fields: dict[str, list[str]]
    files: list[tuple[str, str, bytes]]  # (part name, file name, content)
    body: Any = None
    raw_path: str = ""


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(data).encode(), headers or {})


class FakeV3:
    """A loopback server in the v3 API's place: it records each request and answers
    with what the test scripted for its method and path (in order; the last repeats)."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: dict[tuple[str, str], list[Answer]] = {}
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.script[(method, path)] = list(answers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/v3/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v3"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        fields: dict[str, list[str]] = {}
        files: list[tuple[str, str, bytes]] = []
        body: Any = None
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                content = bytes(await part.read())
                if part.filename is None:
                    fields.setdefault(part.name or "", []).append(content.decode())
                else:
                    files.append((part.name or "", part.filename, content))
        elif request.content_type == "application/json":
            body = await request.json()
        path = request.path.removeprefix("/v3")
        self.seen.append(
            Seen(
                request.method,
                path,
                dict(request.query),
                request.headers.get("Authorization", ""),
                fields,
                files,
                body,
                request.raw_path.split("?")[0],
            )
        )
        answers = self.script.get((request.method, path)) or [Answer(404, b'{"error": {}}')]
        scripted = answers.pop(0) if len(answers) > 1 else answers[0]
        return web.Response(
            status=scripted.status,
            body=scripted.body,
            headers=scripted.headers,
            content_type=scripted.content_type,
        )


@pytest.fixture
async def server() -> AsyncIterator[FakeV3]:
    fake = FakeV3()
    await fake.start()
    yield fake
    await fake.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def client(server: FakeV3) -> AsyncIterator[DropboxFaxClient]:
    async with DropboxFaxClient(API_KEY, server.base_url, timeout=5.0) as opened:
        yield opened


def transmitting() -> Any:
    return fixture_case("FaxResponse.json")


# --- the seam -------------------------------------------------------------------------------


def test_it_is_a_provider_behind_the_seam() -> None:
    provider: FaxProvider = DropboxFaxClient(API_KEY)
    assert provider.removes_sent is True  # until the provider is known to keep them
    assert provider.name == "Dropbox Fax API v3"
    assert DropboxFaxClient(API_KEY, removes_sent=False).removes_sent is False


# --- send -----------------------------------------------------------------------------------


async def test_a_send_is_multipart_with_basic_auth_and_reads_the_fax(
    server: FakeV3, client: DropboxFaxClient, tmp_path: Path
) -> None:
    server.on("POST", "/fax/send", answer(transmitting()))
    document = tmp_path / "letter.pdf"
    document.write_bytes(pdf_document(2))
    fax = OutgoingFax(
        "+18005550199",
        [Upload.from_path(document), Upload("b.txt", b"hello", "text/plain")],
        from_line="14155557068",
        cover_to="Ann",
        cover_from="Bob",
        cover_message="Two pages",
        reference="job-1",
    )

    report = await client.send(fax)

    (seen,) = server.seen
    assert seen.authorization == "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
    assert seen.fields == {
        "recipient": ["18005550199"],
        "test_mode": ["false"],
        "sender": ["14155557068"],
        "title": ["faxgate job-1"],
        "cover_page_to": ["Ann"],
        "cover_page_from": ["Bob"],
        "cover_page_message": ["Two pages"],
    }
    assert [(name, filename) for name, filename, _ in seen.files] == [
        ("files[]", "letter.pdf"),
        ("files[]", "b.txt"),
    ]
    assert seen.files[0][2] == document.read_bytes()
    assert (report.guid, report.to, report.status_code) == (
        FAX_ID,
        "18005550199",
        StatusCode.TRANSMITTING,
    )
    assert report.raw["fax_id"] == FAX_ID


async def test_a_cover_page_alone_is_sent_as_json(server: FakeV3, client: DropboxFaxClient) -> None:
    server.on("POST", "/fax/send", answer(transmitting()))
    await client.send(OutgoingFax("18005550199", [], cover_message="Call me"))
    assert server.seen[0].body == {
        "recipient": "18005550199",
        "test_mode": False,
        "cover_page_message": "Call me",
    }


async def test_test_mode_is_sent_with_every_fax(server: FakeV3) -> None:
    server.on("POST", "/fax/send", answer(transmitting()))
    async with DropboxFaxClient(API_KEY, server.base_url, test_mode=True) as client:
        await client.send(OutgoingFax("18005550199", [Upload("a.pdf", pdf_document(1))]))
    assert server.seen[0].fields["test_mode"] == ["true"]


async def test_an_unreadable_answer_to_a_send_is_ambiguous(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    server.on("POST", "/fax/send", Answer(200, example_text("FaxGetResponse.json").encode()))
    with pytest.raises(Ambiguous, match="could not be read"):
        await client.send(OutgoingFax("18005550199", [Upload("a.pdf", b"%PDF")]))


async def test_a_conflict_to_a_send_is_ambiguous_never_a_failure(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    server.on("POST", "/fax/send", Answer(409, example_text("Error409Response.json").encode()))
    with pytest.raises(Ambiguous, match="identical"):
        await client.send(OutgoingFax("18005550199", [Upload("a.pdf", b"%PDF")]))


async def test_a_send_to_nowhere_is_refused_before_any_request(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    with pytest.raises(ValueError, match="destination"):
        await client.send(OutgoingFax(" ", [Upload("a.pdf", b"%PDF")]))
    with pytest.raises(ValueError, match="file or a cover page"):
        await client.send(OutgoingFax("18005550199", []))
    assert server.seen == []


# --- get, list, files, delete ---------------------------------------------------------------


async def test_get_reads_the_fax_and_the_job_reference_in_its_title(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    sent = fixture_case("FaxGetResponse.json")
    sent["fax"]["title"] = "faxgate job-7"
    server.on("GET", f"/fax/{FAX_ID}", answer(sent))
    report = await client.get_fax(FAX_ID)
    assert report.reference == "job-7"
    assert report.status_code is StatusCode.SENT


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("success", StatusCode.SENT, None),
        ("transmitting", StatusCode.TRANSMITTING, None),
        ("error_busy", StatusCode.ERROR, ErrorCode.BUSY),
        ("error_no_answer", StatusCode.ERROR, ErrorCode.NO_ANSWER),
        ("error_bad_destination", StatusCode.ERROR, ErrorCode.UNALLOCATED),
        ("on_hold", StatusCode.ON_HOLD, None),
        ("queued_for_the_moon", None, None),
    ],
)
async def test_a_status_code_is_read_as_faxgate_reads_it_and_unknown_is_no_failure(
    server: FakeV3,
    client: DropboxFaxClient,
    code: str,
    status: StatusCode | None,
    error: ErrorCode | None,
) -> None:
    fax = transmitting()
    fax["fax"]["transmissions"][0]["status_code"] = code
    server.on("GET", f"/fax/{FAX_ID}", answer(fax))
    report = await client.get_fax(FAX_ID)
    assert (report.status_code, report.error_code) == (status, error)


async def test_a_fax_without_transmissions_yet_is_pending(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    fax = transmitting()
    fax["fax"]["transmissions"] = []
    server.on("GET", f"/fax/{FAX_ID}", answer(fax))
    assert (await client.get_fax(FAX_ID)).status_code is StatusCode.PENDING


async def test_a_fax_not_there_is_refused_as_gone(server: FakeV3, client: DropboxFaxClient) -> None:
    server.on("GET", f"/fax/{FAX_ID}", Answer(404, example_text("Error404Response.json").encode()))
    with pytest.raises(Refused) as refused:
        await client.get_fax(FAX_ID)
    assert refused.value.status == 404


async def test_a_list_pages_from_one_and_follows_list_info(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    page = fixture_case("FaxListResponse.json")
    page["list_info"] = {"num_pages": 2, "num_results": 2, "page": 1, "page_size": 1}
    last = json.loads(json.dumps(page))
    last["list_info"]["page"] = 2
    last["faxes"][0]["fax_id"] = "f" * 40
    server.on("GET", "/fax/list", answer(page), answer(last))

    first = await client.list_faxes(page_size=500)
    following = await client.next_page(first)

    assert [seen.query for seen in server.seen] == [
        {"page": "1", "page_size": "100"},  # at most 100 a page
        {"page": "2", "page_size": "100"},  # the same size: the pages do not shift
    ]
    assert first.page == 1
    assert following is not None
    assert following.next_page is None
    assert [fax.guid for fax in following.faxes] == ["f" * 40]
    assert await client.next_page(following) is None
    assert len(server.seen) == 2


async def test_download_gives_the_pdf_and_delete_answers_204(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    pdf = pdf_document(1)
    server.on("GET", f"/fax/files/{FAX_ID}", Answer(200, pdf, content_type="application/pdf"))
    server.on("DELETE", f"/fax/{FAX_ID}", Answer(204, b"", content_type="text/plain"))
    assert await client.download(FAX_ID) == pdf
    await client.delete_fax(FAX_ID)
    assert [(seen.method, seen.path) for seen in server.seen] == [
        ("GET", f"/fax/files/{FAX_ID}"),
        ("DELETE", f"/fax/{FAX_ID}"),
    ]


async def test_a_file_the_provider_no_longer_keeps_is_refused(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    gone = Answer(410, example_text("Error410Response.json").encode())
    server.on("GET", f"/fax/files/{FAX_ID}", gone)
    with pytest.raises(Refused, match="no longer keeps"):
        await client.download(FAX_ID)


async def test_a_path_cannot_be_steered_by_the_id(server: FakeV3, client: DropboxFaxClient) -> None:
    server.on("GET", "/fax/../list", answer(transmitting()))
    await client.get_fax("../list")
    assert server.seen[0].raw_path == "/v3/fax/..%2Flist"  # one segment, not a way up


# --- fax lines ------------------------------------------------------------------------------


async def test_fax_lines_area_codes_create_get_list_delete_and_users(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    line = fixture_case("FaxLineResponse.json")
    lines = fixture_case("FaxLineListResponse.json")
    server.on(
        "GET",
        "/fax_line/area_codes",
        Answer(200, example_text("FaxLineAreaCodeGetResponse.json").encode()),
    )
    server.on("POST", "/fax_line/create", answer(line))
    server.on("GET", "/fax_line", answer(line))
    server.on("GET", "/fax_line/list", answer(lines))
    server.on("DELETE", "/fax_line", Answer(200, b"{}"))
    server.on("PUT", "/fax_line/add_user", answer(line))
    server.on("PUT", "/fax_line/remove_user", answer(line))

    codes = await client.area_codes("ca")
    bought = await client.buy_fax_line("415")
    got = await client.fax_line("+14155557897")
    listed = await client.list_fax_lines()
    await client.delete_fax_line("14155557897")
    await client.add_user("14155557897", email="ann@example.com")
    await client.remove_user("14155557897", account_id="abc")

    assert "415" in codes
    assert bought.number == got.number == "14155557897"
    assert [item.number for item in listed] == [item["number"] for item in lines["fax_lines"]]
    bodies = {(seen.method, seen.path): (seen.query, seen.body) for seen in server.seen}
    assert bodies[("GET", "/fax_line/area_codes")][0] == {"country": "US", "state": "CA"}
    assert bodies[("POST", "/fax_line/create")][1] == {"area_code": 415, "country": "US"}
    assert bodies[("GET", "/fax_line")][0] == {"number": "14155557897"}
    assert bodies[("DELETE", "/fax_line")][1] == {"number": "14155557897"}
    assert bodies[("PUT", "/fax_line/add_user")][1] == {
        "number": "14155557897",
        "email_address": "ann@example.com",
    }
    assert bodies[("PUT", "/fax_line/remove_user")][1] == {
        "number": "14155557897",
        "account_id": "abc",
    }


async def test_a_line_user_needs_a_name(client: DropboxFaxClient) -> None:
    with pytest.raises(ValueError, match="account id or email"):
        await client.add_user("14155557897")


# --- errors and the rate --------------------------------------------------------------------


async def test_a_rate_limit_answer_is_rate_limited_with_its_wait(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    limited = Answer(429, example_text("Error429Response.json").encode(), {"Retry-After": "7"})
    server.on("GET", f"/fax/{FAX_ID}", limited)
    with pytest.raises(RateLimited) as error:
        await client.get_fax(FAX_ID)
    assert error.value.retry_after == 7.0


async def test_errors_never_carry_the_api_key(server: FakeV3, client: DropboxFaxClient) -> None:
    echoed = {"error": {"error_msg": f"bad key {API_KEY}", "error_name": "unauthorized"}}
    server.on("GET", f"/fax/{FAX_ID}", answer(echoed, 401))
    with pytest.raises(Refused) as error:
        await client.get_fax(FAX_ID)
    assert API_KEY not in str(error.value)


async def test_an_unreadable_read_is_a_bad_response_and_a_busy_read_unavailable(
    server: FakeV3, client: DropboxFaxClient
) -> None:
    server.on("GET", "/fax/list", Answer(200, b"<html>oops</html>", content_type="text/html"))
    with pytest.raises(BadResponse):
        await client.list_faxes()
    server.on("GET", f"/fax/{FAX_ID}", Answer(409, example_text("Error409Response.json").encode()))
    with pytest.raises(Unavailable):
        await client.get_fax(FAX_ID)


async def test_a_server_that_is_not_there_is_not_sent(server: FakeV3) -> None:
    base = server.base_url
    await server.stop()
    async with DropboxFaxClient(API_KEY, base, timeout=2.0) as client:
        with pytest.raises(NotSent):
            await client.send(OutgoingFax("18005550199", [Upload("a.pdf", b"%PDF")]))


async def test_the_client_keeps_to_its_rate_by_itself(server: FakeV3) -> None:
    clock = FakeClock()
    waits: list[float] = []
    limiter = RateLimiter(3, 60.0, clock=clock)
    server.on("GET", f"/fax/{FAX_ID}", answer(transmitting()))

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    async with DropboxFaxClient(API_KEY, server.base_url, limiter=limiter) as client:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("faxgate.dropbox_fax.client.asyncio.sleep", sleep)
            for _ in range(7):
                await client.get_fax(FAX_ID)
    assert len(server.seen) == 7
    assert waits == [60.0, 60.0]  # three a minute: two full windows waited


async def test_a_spent_budget_in_the_headers_holds_the_next_request(server: FakeV3) -> None:
    clock = FakeClock()
    waits: list[float] = []
    headers = {"X-RateLimit-Remaining": "0", "X-Ratelimit-Reset": str(int(clock.now) + 30)}
    server.on("GET", f"/fax/{FAX_ID}", answer(transmitting(), headers=headers))

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    limiter = RateLimiter(100, 60.0, clock=clock)
    async with DropboxFaxClient(API_KEY, server.base_url, limiter=limiter) as client:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("faxgate.dropbox_fax.client.asyncio.sleep", sleep)
            await client.get_fax(FAX_ID)
            await client.get_fax(FAX_ID)
    assert waits == [30.0]


def test_a_base_url_with_credentials_or_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="credentials"):
        DropboxFaxClient(API_KEY, "https://key:@api.example.com/v3")
    with pytest.raises(ValueError, match="API key is empty"):
        DropboxFaxClient(" ")
