"""HelloFaxClient against replayed provider answers (httpx.MockTransport), plus a few real
loopback sockets for the failures that only a real connection produces."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.policy
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from faxgate.domain.provider import (
    Ambiguous,
    BadResponse,
    NotSent,
    ProviderFault,
    RateLimited,
    Refused,
    Unavailable,
)
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.errors import HelloFaxError
from faxgate.hellofax.models import (
    ErrorCode,
    StatusCode,
    Transmission,
    TransmissionPage,
    Upload,
)

BASE = "https://api.hellofax.test/v1"
GUID = "15da1c48b10c96a903eb1bac3d592fbed24ebc35"
ACCOUNT = f"{BASE}/Accounts/{GUID}"
USER = "me@example.com"
PASSWORD = "fake-Pa55word-xyz"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

Handler = Callable[[httpx.Request], httpx.Response]


def transmission_json(guid: str = "t1", **fields: Any) -> dict[str, Any]:
    """The provider's callback example, with overrides."""
    data: dict[str, Any] = {
        "Guid": guid,
        "To": "14154847140",
        "From": "14155550000",
        "IsInbound": False,
        "IsDraft": False,
        "TypeCode": "F",
        "StatusCode": "S",
        "ErrorCode": None,
        "CreatedAt": "1505933982",
        "UpdatedAt": "1505934022",
        "Uri": f"/v1/Accounts/{GUID}/Transmissions/{guid}",
        "NumPagesBilled": 1,
    }
    data.update(fields)
    return data


def account_json(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "Guid": GUID,
        "DefaultOutboundFaxCallbackUrl": "https://example.com/out",
        "DefaultInboundFaxCallbackUrl": None,
        "ShouldSendOutboundConfEmails": False,
        "ShouldIncludePdfsInReceivedFaxEmails": True,
        "SomethingNew": 1,
    }
    data.update(fields)
    return data


class FakeApi:
    """Records every request and answers with the test's handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # yield like a real network call, so deadlines can fire
        self.requests.append(request)
        return self.handler(request)


@contextlib.asynccontextmanager
async def fake_api(handler: Handler) -> AsyncIterator[tuple[HelloFaxClient, FakeApi]]:
    api = FakeApi(handler)
    async with HelloFaxClient(
        BASE, GUID, USER, PASSWORD, transport=httpx.MockTransport(api)
    ) as client:
        yield client, api


def answer(body: Any, status: int = 200) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def form_fields(request: httpx.Request) -> dict[str, list[str]]:
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    return parse_qs(request.content.decode(), keep_blank_values=True)


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, str, bytes]]:
    """Field name -> (file name, content type, bytes), as the provider would read them."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    raw = f"Content-Type: {content_type}\r\n\r\n".encode() + request.content
    message = BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts: dict[str, tuple[str | None, str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str)
        assert name not in parts, f"field {name} sent twice"
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[name] = (part.get_filename(), part.get_content_type(), payload)
    return parts


# --- account --------------------------------------------------------------------------------


async def test_get_account_unwraps_account_and_authenticates() -> None:
    async with fake_api(answer({"Account": account_json()})) as (client, api):
        account = await client.get_account()

    assert account.guid == GUID
    assert account.default_outbound_fax_callback_url == "https://example.com/out"
    assert account.default_inbound_fax_callback_url is None
    assert account.should_send_outbound_conf_emails is False
    assert account.should_include_pdfs_in_received_fax_emails is True
    (request,) = api.requests
    assert request.method == "GET"
    assert str(request.url) == ACCOUNT
    assert request.headers["authorization"] == f"Basic {TOKEN}"
    assert request.url.userinfo == b""
    assert request.headers["user-agent"].startswith("faxgate/")
    assert request.headers["accept"] == "application/json"


async def test_get_account_reads_a_bare_object() -> None:
    async with fake_api(answer(account_json(Guid=GUID))) as (client, _):
        assert (await client.get_account()).guid == GUID


async def test_update_account_posts_only_the_urls_given() -> None:
    stored = account_json(DefaultInboundFaxCallbackUrl="https://example.com/in")
    async with fake_api(answer({"Account": stored})) as (client, api):
        account = await client.update_account(inbound_url="https://example.com/in")

    assert account.default_inbound_fax_callback_url == "https://example.com/in"
    (request,) = api.requests
    assert (request.method, str(request.url)) == ("POST", ACCOUNT)
    assert form_fields(request) == {"DefaultInboundFaxCallbackUrl": ["https://example.com/in"]}


async def test_update_account_sends_both_urls_and_rereads_an_empty_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200)
        return httpx.Response(200, json={"Account": account_json()})

    async with fake_api(handler) as (client, api):
        account = await client.update_account(
            inbound_url="https://example.com/in", outbound_url="https://example.com/out"
        )

    assert account.guid == GUID
    post, get = api.requests
    assert form_fields(post) == {
        "DefaultInboundFaxCallbackUrl": ["https://example.com/in"],
        "DefaultOutboundFaxCallbackUrl": ["https://example.com/out"],
    }
    assert (get.method, str(get.url)) == ("GET", ACCOUNT)


async def test_update_account_needs_a_url() -> None:
    async with fake_api(answer({})) as (client, api):
        with pytest.raises(ValueError, match="URL"):
            await client.update_account()
    assert api.requests == []


# --- fax lines and area codes ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"FaxLines": [{"Number": "14155551234", "Uri": "/v1/x/1"}, {"Number": "14155550000"}]},
        {"FaxLines": [{"FaxLine": {"Number": "14155551234", "Uri": "/v1/x/1"}}, "14155550000"]},
        {"FaxLines": [14155551234, "14155550000"]},
        [{"Number": 14155551234}, {"FaxLine": {"Number": "14155550000"}}],
    ],
    ids=["objects", "wrapped-and-string", "ints-and-strings", "bare-list"],
)
async def test_list_fax_lines_reads_every_item_shape(body: Any) -> None:
    async with fake_api(answer(body)) as (client, api):
        lines = await client.list_fax_lines()

    assert [line.number for line in lines] == ["14155551234", "14155550000"]
    assert str(api.requests[0].url) == f"{ACCOUNT}/FaxLines"


async def test_list_fax_lines_keeps_the_uri() -> None:
    body = {"FaxLines": [{"Number": "14155551234", "Uri": "/v1/x/1"}], "NextPageUri": None}
    async with fake_api(answer(body)) as (client, _):
        (line,) = await client.list_fax_lines()
    assert line.uri == "/v1/x/1"


async def test_an_account_without_lines_has_an_empty_list() -> None:
    async with fake_api(answer({"FaxLines": []})) as (client, _):
        assert await client.list_fax_lines() == []


@pytest.mark.parametrize(
    "body",
    [
        {"FaxLine": {"Number": "14155551234"}},
        {"Number": "14155551234"},
        {"FaxLines": [{"Number": 14155551234}]},
    ],
    ids=["wrapped", "bare", "one-item-list"],
)
async def test_buy_fax_line_posts_the_area_code(body: Any) -> None:
    async with fake_api(answer(body)) as (client, api):
        line = await client.buy_fax_line(415)

    assert line.number == "14155551234"
    (request,) = api.requests
    assert (request.method, str(request.url)) == ("POST", f"{ACCOUNT}/FaxLines")
    assert form_fields(request) == {"AreaCode": ["415"]}


async def test_delete_fax_line_deletes_that_number_only() -> None:
    async with fake_api(lambda request: httpx.Response(200)) as (client, api):
        await client.delete_fax_line("12132935579")
        await client.delete_fax_line("../../Transmissions")

    first, hostile = api.requests
    assert (first.method, str(first.url)) == ("DELETE", f"{ACCOUNT}/FaxLines/12132935579")
    assert hostile.url.raw_path == f"/v1/Accounts/{GUID}/FaxLines/..%2F..%2FTransmissions".encode()


@pytest.mark.parametrize(
    "body", [{"AreaCodes": [415, 510]}, {"AreaCodes": ["415", "510"]}, [415, "510"]]
)
async def test_area_codes_by_state(body: Any) -> None:
    async with fake_api(answer(body)) as (client, api):
        codes = await client.area_codes("ca")

    assert codes == ["415", "510"]
    (request,) = api.requests
    assert request.url.copy_with(query=None) == httpx.URL(f"{BASE}/AreaCodes")
    assert request.url.params["StateCode"] == "CA"


# --- sending --------------------------------------------------------------------------------


async def test_send_one_file_to_one_number_uses_plain_field_names() -> None:
    body = {"Transmission": transmission_json("t1", StatusCode="P", CreatedAt=None)}
    async with fake_api(answer(body)) as (client, api):
        sent = await client.send(
            "14154847140",
            [Upload("letter.pdf", b"%PDF-1.4 letter", "application/pdf")],
            from_line="14155550000",
            cover_to="Ann",
            cover_from="Bob",
            cover_message="Two pages",
        )

    assert [(t.guid, t.status_code) for t in sent] == [("t1", StatusCode.PENDING)]
    (request,) = api.requests
    assert (request.method, str(request.url)) == ("POST", f"{ACCOUNT}/Transmissions")
    assert multipart_parts(request) == {
        "To": (None, "text/plain", b"14154847140"),
        "From": (None, "text/plain", b"14155550000"),
        "CoverPageTo": (None, "text/plain", b"Ann"),
        "CoverPageFrom": (None, "text/plain", b"Bob"),
        "CoverPageMessage": (None, "text/plain", b"Two pages"),
        "file": ("letter.pdf", "application/pdf", b"%PDF-1.4 letter"),
    }


async def test_send_several_files_to_several_numbers_uses_indexed_field_names(
    tmp_path: Path,
) -> None:
    on_disk = tmp_path / "scan.tiff"
    on_disk.write_bytes(b"II*\x00" + bytes(range(256)) * 300)
    body = [
        {"Transaction": transmission_json("t1", To="14154847140", StatusCode="P")},
        transmission_json("t2", To="14155551111", StatusCode="T"),
    ]
    async with fake_api(answer(body)) as (client, api):
        sent = await client.send(
            ["14154847140", "14155551111"],
            [Upload("a.pdf", b"%PDF a", "application/pdf"), Upload.from_path(on_disk)],
        )

    assert [(t.guid, t.to) for t in sent] == [("t1", "14154847140"), ("t2", "14155551111")]
    assert multipart_parts(api.requests[0]) == {
        "To[0]": (None, "text/plain", b"14154847140"),
        "To[1]": (None, "text/plain", b"14155551111"),
        "file[0]": ("a.pdf", "application/pdf", b"%PDF a"),
        "file[1]": ("scan.tiff", "image/tiff", on_disk.read_bytes()),
    }


async def test_a_file_too_big_for_memory_is_streamed_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4 " + bytes(range(256)) * (12 * 1024))  # 3 MiB: streamed
    async with fake_api(answer(transmission_json("t1"))) as (client, api):
        await client.send("14154847140", [Upload.from_path(big)])
    assert multipart_parts(api.requests[0])["file"][2] == big.read_bytes()


@pytest.mark.parametrize(
    "body",
    [
        {"Transmission": transmission_json("t1")},
        {"Transaction": transmission_json("t1")},
        transmission_json("t1"),
        [{"Transmission": transmission_json("t1")}],
        {"Transmissions": [transmission_json("t1")]},
    ],
    ids=["transmission", "transaction", "bare", "list", "envelope"],
)
async def test_send_reads_one_object_or_a_list(body: Any) -> None:
    async with fake_api(answer(body)) as (client, _):
        sent = await client.send("14154847140", [Upload("a.pdf", b"%PDF")])
    assert [t.guid for t in sent] == ["t1"]


async def test_send_opens_a_missing_file_before_anything_leaves(tmp_path: Path) -> None:
    async with fake_api(answer({})) as (client, api):
        with pytest.raises(FileNotFoundError):
            await client.send("14154847140", [Upload("gone.pdf", tmp_path / "gone.pdf")])
    assert api.requests == []


async def test_send_a_cover_page_alone() -> None:
    async with fake_api(answer({"Transmission": transmission_json()})) as (client, api):
        await client.send("14154847140", [], cover_message="Call me")
    assert form_fields(api.requests[0]) == {"To": ["14154847140"], "CoverPageMessage": ["Call me"]}


@pytest.mark.parametrize(
    ("to", "files"),
    [([], [Upload("a.pdf", b"x")]), ("  ", [Upload("a.pdf", b"x")]), ("14154847140", [])],
)
async def test_send_refuses_a_fax_with_nothing_to_send_or_nowhere_to_go(
    to: str | list[str], files: list[Upload]
) -> None:
    async with fake_api(answer({})) as (client, api):
        with pytest.raises(ValueError, match="a fax needs"):
            await client.send(to, files)
    assert api.requests == []


# --- reading transmissions ------------------------------------------------------------------


@pytest.mark.parametrize("wrapper", ["Transmission", "Transaction"])
@pytest.mark.parametrize(
    ("status", "error", "expected_status", "expected_error"),
    [
        ("S", None, StatusCode.SENT, None),
        ("H", None, StatusCode.ON_HOLD, None),
        ("O", "", StatusCode.ON_HOLD, None),
        ("E", "B", StatusCode.ERROR, ErrorCode.BUSY),
        ("E", "R", StatusCode.ERROR, ErrorCode.BUSY),
        ("E", "A", StatusCode.ERROR, ErrorCode.UNALLOCATED),
        ("E", "Q", StatusCode.ERROR, ErrorCode.UNKNOWN),
    ],
)
async def test_get_transmission_reads_both_wrappers_and_spellings(
    wrapper: str,
    status: str,
    error: str | None,
    expected_status: StatusCode,
    expected_error: ErrorCode | None,
) -> None:
    body = {wrapper: transmission_json("abc", StatusCode=status, ErrorCode=error)}
    async with fake_api(answer(body)) as (client, api):
        transmission = await client.get_transmission("abc")

    assert str(api.requests[0].url) == f"{ACCOUNT}/Transmissions/abc"
    assert transmission.status_code is expected_status
    assert transmission.error_code is expected_error


async def test_transmission_fields_and_timestamps() -> None:
    body = {"Transmission": transmission_json("abc", UpdatedAt=1505934022, NumPagesBilled="3")}
    async with fake_api(answer(body)) as (client, _):
        transmission = await client.get_transmission("abc")

    assert transmission.guid == "abc"
    assert (transmission.to, transmission.from_) == ("14154847140", "14155550000")
    assert (transmission.is_inbound, transmission.is_draft) == (False, False)
    assert transmission.type_code == "F"
    assert transmission.created_at == datetime(2017, 9, 20, 18, 59, 42, tzinfo=UTC)
    assert transmission.updated_at == datetime(2017, 9, 20, 19, 0, 22, tzinfo=UTC)
    assert transmission.num_pages_billed == 3
    assert transmission.uri == f"/v1/Accounts/{GUID}/Transmissions/abc"


def test_transmission_from_api_reads_callback_json_text() -> None:
    text = json.dumps({"Transaction": transmission_json("cb", IsInbound=True, From="")})
    transmission = Transmission.from_api(text)
    assert (transmission.guid, transmission.is_inbound, transmission.from_) == ("cb", True, None)


def page_json(items: list[Any], page: int | None, next_uri: str | None) -> dict[str, Any]:
    return {
        "Transmissions": items,
        "Page": page,
        "NumPages": 3,
        "PageSize": 2,
        "Total": 5,
        "FirstPageUri": f"/v1/Accounts/{GUID}/Transmissions?Page=0&PageSize=2",
        "PreviousPageUri": None,
        "NextPageUri": next_uri,
        "LastPageUri": None,
    }


def paged_handler(pages: dict[int, dict[str, Any]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/Accounts/{GUID}/Transmissions"
        number = int(request.url.params.get("Page", "0"))
        return httpx.Response(200, json=pages[number])

    return handler


def link(page: int) -> str:
    return f"/v1/Accounts/{GUID}/Transmissions?Page={page}&PageSize=2"


THREE_PAGES = {
    0: page_json([transmission_json("a"), {"Transmission": transmission_json("b")}], 0, link(1)),
    1: page_json([{"Transaction": transmission_json("c")}, transmission_json("d")], 1, link(2)),
    2: page_json([transmission_json("e")], 2, None),
}


async def test_list_transmissions_follows_next_page_uri_until_null() -> None:
    async with fake_api(paged_handler(THREE_PAGES)) as (client, api):
        first = await client.list_transmissions(page_size=2)
        second = await client.next_page(first)
        assert second is not None
        third = await client.next_page(second)
        assert third is not None
        assert await client.next_page(third) is None

    assert [t.guid for t in first.transmissions] == ["a", "b"]
    assert (first.page, first.num_pages, first.page_size, first.total) == (0, 3, 2, 5)
    assert first.next_page_uri == link(1)
    assert third.next_page_uri is None
    assert [str(request.url) for request in api.requests] == [
        f"{ACCOUNT}/Transmissions?PageSize=2",
        f"https://api.hellofax.test{link(1)}",
        f"https://api.hellofax.test{link(2)}",
    ]


async def test_list_transmissions_asks_for_a_page() -> None:
    async with fake_api(paged_handler(THREE_PAGES)) as (client, api):
        page = await client.list_transmissions(page=1, page_size=2)
    assert [t.guid for t in page.transmissions] == ["c", "d"]
    assert api.requests[0].url.params == httpx.QueryParams({"Page": "1", "PageSize": "2"})


async def all_guids(transmissions: AsyncIterator[Transmission]) -> list[str]:
    """Drain the iterator, failing (rather than hanging) if it never ends."""
    async with asyncio.timeout(5):
        return [transmission.guid async for transmission in transmissions]


async def test_iter_transmissions_walks_every_page() -> None:
    async with fake_api(paged_handler(THREE_PAGES)) as (client, api):
        guids = await all_guids(client.iter_transmissions(page_size=2))
    assert guids == ["a", "b", "c", "d", "e"]
    assert len(api.requests) == 3


async def test_iter_transmissions_stops_on_a_link_it_already_followed() -> None:
    pages = {
        0: page_json([transmission_json("a")], None, link(1)),
        1: page_json([transmission_json("b")], None, link(1)),  # the last page links itself
    }
    async with fake_api(paged_handler(pages)) as (client, api):
        guids = await all_guids(client.iter_transmissions())
    assert guids == ["a", "b"]
    assert len(api.requests) == 2


async def test_iter_transmissions_stops_when_the_page_number_does_not_advance() -> None:
    pages = {
        0: page_json([transmission_json("a")], 0, link(1)),
        1: page_json([transmission_json("a")], 0, link(2)),  # Page ignored: page 0 again
    }
    async with fake_api(paged_handler(pages)) as (client, api):
        guids = await all_guids(client.iter_transmissions())
    assert guids == ["a"]
    assert len(api.requests) == 2


async def test_an_empty_list_with_null_links() -> None:
    body = {"Transmissions": [], "Page": 0, "NumPages": 0, "NextPageUri": None, "LastPageUri": ""}
    async with fake_api(answer(body)) as (client, _):
        page = await client.list_transmissions()
        assert page.transmissions == []
        assert page.last_page_uri is None
        assert await all_guids(client.iter_transmissions()) == []


async def test_a_next_link_to_another_host_is_not_followed() -> None:
    page = TransmissionPage.from_api(
        page_json([], 0, "https://elsewhere.test/v1/Accounts/x/Transmissions?Page=1")
    )
    async with fake_api(answer({})) as (client, api):
        with pytest.raises(BadResponse, match="another host"):
            await client.next_page(page)
    assert api.requests == []


async def test_an_absolute_next_link_on_the_same_host_is_followed() -> None:
    page = TransmissionPage.from_api(page_json([], 0, f"{ACCOUNT}/Transmissions?Page=2"))
    async with fake_api(paged_handler(THREE_PAGES)) as (client, api):
        following = await client.next_page(page)
    assert following is not None
    assert [t.guid for t in following.transmissions] == ["e"]
    assert str(api.requests[0].url) == f"{ACCOUNT}/Transmissions?Page=2"


# --- errors ---------------------------------------------------------------------------------


def failing(exc_type: type[httpx.RequestError], text: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return handler


async def send_one(client: HelloFaxClient) -> list[Transmission]:
    return await client.send("14154847140", [Upload("a.pdf", b"%PDF")])


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_failures_before_the_request_left_are_not_sent(
    exc_type: type[httpx.RequestError],
) -> None:
    async with fake_api(failing(exc_type)) as (client, _):
        with pytest.raises(NotSent, match="could not reach the provider") as on_send:
            await send_one(client)
        with pytest.raises(NotSent) as on_get:
            await client.get_account()
    assert on_send.value.status is None
    assert on_send.value.endpoint == "send"
    assert on_get.value.endpoint == "get_account"


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError],
)
async def test_failures_after_a_send_left_are_ambiguous(
    exc_type: type[httpx.RequestError],
) -> None:
    async with fake_api(failing(exc_type)) as (client, _):
        with pytest.raises(Ambiguous, match="may have been acted on"):
            await send_one(client)
        with pytest.raises(Ambiguous):
            await client.buy_fax_line("415")


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.RemoteProtocolError])
async def test_failures_after_a_read_left_are_unavailable(
    exc_type: type[httpx.RequestError],
) -> None:
    async with fake_api(failing(exc_type)) as (client, _):
        with pytest.raises(Unavailable, match="did not answer") as caught:
            await client.get_transmission("abc")
    assert isinstance(caught.value, ProviderFault)
    assert not isinstance(caught.value, Ambiguous)


RATE_LIMIT_TEXT = (
    "Please wait. You already have at least 200 transmissions that are currently pending or "
    "transmitting."
)


async def test_429_is_rate_limited_with_the_provider_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": RATE_LIMIT_TEXT}, headers={"Retry-After": "60"})

    async with fake_api(handler) as (client, _):
        with pytest.raises(RateLimited) as caught:
            await send_one(client)
    assert caught.value.status == 429
    assert caught.value.retry_after == 60.0
    assert RATE_LIMIT_TEXT in caught.value.message
    assert str(caught.value) == caught.value.message


async def test_429_in_plain_text_without_retry_after() -> None:
    handler: Handler = lambda request: httpx.Response(429, text=RATE_LIMIT_TEXT)  # noqa: E731
    async with fake_api(handler) as (client, _):
        with pytest.raises(RateLimited, match="at least 200 transmissions") as caught:
            await send_one(client)
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "call", "expected"),
    [
        (400, "send", "the provider refused the request (400): To is not a fax number"),
        (401, "get_account", "the provider refused the credentials (401): To is not a fax number"),
        (404, "get_account", "the provider knows no such account (404): To is not a fax number"),
        (404, "get_transmission", "the provider knows no such transmission on this account"),
        (404, "delete_fax_line", "the provider knows no such fax line on this account (404)"),
    ],
)
async def test_4xx_is_refused_in_plain_words(status: int, call: str, expected: str) -> None:
    calls: dict[str, Callable[[HelloFaxClient], Any]] = {
        "send": send_one,
        "get_account": lambda client: client.get_account(),
        "get_transmission": lambda client: client.get_transmission("abc"),
        "delete_fax_line": lambda client: client.delete_fax_line("14155551234"),
    }
    async with fake_api(answer({"Message": "To is not a fax number"}, status)) as (client, _):
        with pytest.raises(Refused) as caught:
            await calls[call](client)
    assert caught.value.status == status
    assert caught.value.message.startswith(expected)


async def test_401_without_a_body_reads_plainly() -> None:
    async with fake_api(lambda request: httpx.Response(401)) as (client, _):
        with pytest.raises(Refused) as caught:
            await client.get_account()
    assert caught.value.message == "the provider refused the credentials (401)"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "the provider failed (500): database on fire"),
        (503, "the provider is unavailable (503): database on fire"),
    ],
)
async def test_5xx_is_a_provider_fault(status: int, expected: str) -> None:
    async with fake_api(answer({"ErrorMessage": "database on fire"}, status)) as (client, _):
        with pytest.raises(ProviderFault) as on_send:
            await send_one(client)
        with pytest.raises(ProviderFault) as on_get:
            await client.get_account()
    for caught in (on_send, on_get):
        assert caught.value.status == status
        assert caught.value.message == expected
        assert not isinstance(caught.value, Ambiguous)


@pytest.mark.parametrize("status", [502, 504])
async def test_a_gateway_failure_after_a_send_is_ambiguous(status: int) -> None:
    async with fake_api(lambda request: httpx.Response(status, text="Bad Gateway")) as (client, _):
        with pytest.raises(Ambiguous) as on_send:
            await send_one(client)
        with pytest.raises(ProviderFault) as on_get:
            await client.get_account()
    assert on_send.value.status == status
    assert on_get.value.status == status


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"error": "the file could not be read"}', "application/json"),
        (b'{"message": "the file could not be read"}', "application/json"),
        (b'{"Message": "the file could not be read"}', "application/json"),
        (b'{"ErrorMessage": "the file could not be read"}', "application/json"),
        (b'{"error": {"message": "the file could not be read", "code": 7}}', "application/json"),
        (b'{"Error": {"Message": "the file could not be read"}}', "application/json"),
        (b"the file could not be read\n", "text/plain"),
        (b"<html><title>the file could not be read</title><p>x</p></html>", "text/html"),
        (b"<p>the file\n could not <b>be read</b></p>", "text/html"),
    ],
    ids=[
        "error",
        "message",
        "Message",
        "ErrorMessage",
        "nested",
        "nested-pascal",
        "plain",
        "html-title",
        "html-body",
    ],
)
async def test_error_bodies_show_the_provider_message(body: bytes, content_type: str) -> None:
    handler: Handler = lambda request: httpx.Response(  # noqa: E731
        400, content=body, headers={"content-type": content_type}
    )
    async with fake_api(handler) as (client, _):
        with pytest.raises(Refused) as caught:
            await send_one(client)
    assert (
        caught.value.message == "the provider refused the request (400): the file could not be read"
    )


async def test_a_long_error_body_is_trimmed() -> None:
    async with fake_api(lambda request: httpx.Response(500, text="x" * 10_000)) as (client, _):
        with pytest.raises(ProviderFault) as caught:
            await client.get_account()
    assert len(caught.value.message) < 400
    assert caught.value.message.endswith("x…")


async def test_an_unknown_json_error_body_is_shown_as_json() -> None:
    async with fake_api(answer({"code": 17}, 500)) as (client, _):
        with pytest.raises(ProviderFault, match=r'\(500\): \{"code":17\}'):
            await client.get_account()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<html>maintenance</html>", "not JSON: maintenance"),
        (b"", "not JSON: an empty body"),
        (b'{"Account": {"DefaultInboundFaxCallbackUrl": null}}', "Guid: Field required"),
        (b'{"Transmission": {"Guid": "t", "To": "1", "StatusCode": "Z"}}', "StatusCode: "),
        (b"[1, 2]", "body: Input should be a valid dictionary"),
    ],
)
async def test_an_unreadable_200_to_a_read_is_a_bad_response(body: bytes, detail: str) -> None:
    async with fake_api(lambda request: httpx.Response(200, content=body)) as (client, _):
        read = client.get_transmission("t") if b"Transmission" in body else client.get_account()
        with pytest.raises(BadResponse) as caught:
            await read
    assert caught.value.status == 200
    assert isinstance(caught.value, ProviderFault)
    assert caught.value.message.startswith("the provider's answer could not be read: ")
    assert detail in caught.value.message


@pytest.mark.parametrize("body", [b"OK", b"[]", b'{"Transmission": {"Guid": "t"}}'])
async def test_an_unreadable_200_to_a_send_is_ambiguous(body: bytes) -> None:
    async with fake_api(lambda request: httpx.Response(200, content=body)) as (client, _):
        with pytest.raises(Ambiguous) as caught:
            await send_one(client)
    assert caught.value.status == 200


def test_every_error_is_a_hellofax_error_with_message_and_status() -> None:
    for error_type in (NotSent, Ambiguous, RateLimited, Refused, ProviderFault, BadResponse):
        error = error_type("plain words", status=418)
        assert isinstance(error, HelloFaxError)
        assert (error.message, error.status, str(error)) == ("plain words", 418, "plain words")
        assert "plain words" in repr(error)


# --- secrets, logs, metrics -----------------------------------------------------------------


def _secret_forms() -> list[str]:
    return [PASSWORD, TOKEN]


async def test_the_password_reaches_no_error_and_no_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echoing: Handler = lambda request: httpx.Response(  # noqa: E731
        401, text=f"wrong password {PASSWORD} for {USER} ({request.headers['authorization']})"
    )
    handlers: list[Handler] = [
        echoing,
        failing(httpx.ConnectError, f"cannot connect {PASSWORD}"),
        failing(httpx.ReadTimeout),
        answer({"Account": {"Guid": PASSWORD}}),
        lambda request: httpx.Response(200, text=f"not json {PASSWORD}"),
    ]
    errors: list[HelloFaxError] = []
    for handler in handlers:
        async with fake_api(handler) as (client, _):
            assert PASSWORD not in repr(client)
            for call in (client.get_account(), send_one(client)):
                try:
                    await call
                except HelloFaxError as exc:
                    errors.append(exc)

    assert len(errors) >= 8
    texts = [text for exc in errors for text in (str(exc), repr(exc), exc.message)]
    texts += [text for record in caplog.records for text in (record.getMessage(), str(record.args))]
    assert any("(401)" in text for text in texts)
    assert any("get_account" in record.getMessage() for record in caplog.records)
    for secret in _secret_forms():
        assert not [text for text in texts if secret in text]


def test_credentials_in_the_base_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="must not hold credentials") as caught:
        HelloFaxClient(f"https://me:{PASSWORD}@api.hellofax.test/v1", GUID, USER, PASSWORD)
    assert PASSWORD not in str(caught.value)


async def test_each_call_is_counted_and_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="faxgate.hellofax")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(200, json={"Account": account_json()})

    async with fake_api(handler) as (client, _):
        await client.get_account()
        await client.get_account()
        with pytest.raises(Ambiguous):
            await send_one(client)

    assert client.request_counts == {("get_account", 200): 2, ("send", "ReadTimeout"): 1}
    messages = [
        record.getMessage() for record in caplog.records if record.name.startswith("faxgate")
    ]
    assert len(messages) == 3
    assert all(
        record.levelno == logging.DEBUG
        for record in caplog.records
        if record.name.startswith("faxgate")
    )
    assert f"get_account: GET /v1/Accounts/{GUID} -> 200 in" in messages[0]
    assert "send: POST" in messages[2]
    assert "ReadTimeout" in messages[2]


# --- real loopback sockets ------------------------------------------------------------------


async def test_a_refused_connection_is_not_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HelloFaxClient(f"http://127.0.0.1:{port}/v1", GUID, USER, PASSWORD) as client:
        with pytest.raises(NotSent):
            await send_one(client)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


@contextlib.asynccontextmanager
async def silent_server(*, hang_up: bool) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each whole request, then hangs up or never answers."""
    received: list[bytes] = []
    release = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        received.append(await read_request(reader))
        if not hang_up:
            await release.wait()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", received
    finally:
        release.set()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_read_timeout_after_the_upload_is_ambiguous_for_a_send() -> None:
    async with (
        silent_server(hang_up=False) as (base_url, received),
        HelloFaxClient(base_url, GUID, USER, PASSWORD, timeout=0.3) as client,
    ):
        with pytest.raises(Ambiguous):
            await send_one(client)
        with pytest.raises(Unavailable):
            await client.get_account()
    assert len(received) == 2
    assert b"%PDF" in received[0]
    headers = [line.partition(b":") for line in received[0].split(b"\r\n")]
    assert (b"authorization", f"Basic {TOKEN}".encode()) in [
        (name.lower(), value.strip()) for name, _, value in headers
    ]


async def test_a_connection_dropped_after_the_upload_is_ambiguous_for_a_send() -> None:
    async with (
        silent_server(hang_up=True) as (base_url, received),
        HelloFaxClient(base_url, GUID, USER, PASSWORD) as client,
    ):
        with pytest.raises(Ambiguous, match="RemoteProtocolError"):
            await send_one(client)
    assert b"%PDF" in received[0]
