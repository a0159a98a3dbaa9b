"""The sandbox's v1 API over real HTTP: auth, account, lines, area codes, sends, paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.sandbox.areacodes import AREA_CODES_BY_STATE
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_LINE,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    http_client,
    pdf_document,
)

ACCOUNT = f"/Accounts/{SANDBOX_GUID}"
SEND = f"{ACCOUNT}/Transmissions"


def error_message(answer: httpx.Response) -> str:
    message: str = answer.json()["error"]["message"]
    assert answer.json()["error"]["code"] == answer.status_code
    return message


# Auth ------------------------------------------------------------------------------------


async def test_no_credentials_get_401_with_a_basic_challenge(sandbox: Sandbox) -> None:
    async with http_client(base_url=sandbox.base_url) as anonymous:
        answer = await anonymous.get(ACCOUNT)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("username", "password"),
    [(SANDBOX_USERNAME, "wrong"), ("someone@else.invalid", SANDBOX_PASSWORD)],
)
async def test_wrong_credentials_get_401(sandbox: Sandbox, username: str, password: str) -> None:
    async with http_client(base_url=sandbox.base_url, auth=(username, password)) as client:
        for path in (ACCOUNT, "/AreaCodes?StateCode=CA", SEND):
            assert (await client.get(path)).status_code == 401


async def test_unknown_account_guid_gets_404(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.get(f"/Accounts/{'0' * 40}/FaxLines")
    assert answer.status_code == 404
    assert "0" * 40 in error_message(answer)


# Account ---------------------------------------------------------------------------------


async def test_account_has_the_known_fields(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.get(ACCOUNT)
    assert answer.status_code == 200
    assert answer.json() == {
        "Account": {
            "Guid": SANDBOX_GUID,
            "DefaultOutboundFaxCallbackUrl": None,
            "DefaultInboundFaxCallbackUrl": None,
            "ShouldSendOutboundConfEmails": False,
            "ShouldIncludePdfsInReceivedFaxEmails": True,
        }
    }


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_callback_urls_are_set_by_post_or_put(
    sandbox_api: httpx.AsyncClient, method: str
) -> None:
    answer = await sandbox_api.request(
        method,
        ACCOUNT,
        data={
            "DefaultInboundFaxCallbackUrl": "https://example.com/inboundFax",
            "DefaultOutboundFaxCallbackUrl": "https://example.com/outboundFax",
        },
    )
    assert answer.status_code == 200
    account = (await sandbox_api.get(ACCOUNT)).json()["Account"]
    assert answer.json()["Account"] == account
    assert account["DefaultInboundFaxCallbackUrl"] == "https://example.com/inboundFax"
    assert account["DefaultOutboundFaxCallbackUrl"] == "https://example.com/outboundFax"

    cleared = await sandbox_api.post(ACCOUNT, data={"DefaultInboundFaxCallbackUrl": ""})
    assert cleared.json()["Account"]["DefaultInboundFaxCallbackUrl"] is None
    assert cleared.json()["Account"]["DefaultOutboundFaxCallbackUrl"] is not None


async def test_a_callback_url_that_is_no_url_is_refused(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.post(ACCOUNT, data={"DefaultOutboundFaxCallbackUrl": "ftp://x"})
    assert answer.status_code == 400
    assert "callback URL" in error_message(answer)


# Fax lines and area codes ----------------------------------------------------------------


async def test_the_account_starts_with_its_first_line(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.get(f"{ACCOUNT}/FaxLines")
    assert answer.json() == {
        "FaxLines": [
            {"Number": SANDBOX_LINE, "Uri": f"/v1{ACCOUNT}/FaxLines/{SANDBOX_LINE}"},
        ]
    }


async def test_buy_list_and_delete_a_line(sandbox_api: httpx.AsyncClient) -> None:
    bought = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "510"})
    assert bought.status_code == 200
    number = bought.json()["FaxLine"]["Number"]
    assert number == "15105550100"  # the lowest free number of the area code's pool
    listed = (await sandbox_api.get(f"{ACCOUNT}/FaxLines")).json()["FaxLines"]
    assert [line["Number"] for line in listed] == [SANDBOX_LINE, number]

    uri = listed[1]["Uri"]
    deleted = await sandbox_api.delete(str(httpx.URL(sandbox_api.base_url).join(uri)))
    assert deleted.status_code == 200
    listed = (await sandbox_api.get(f"{ACCOUNT}/FaxLines")).json()["FaxLines"]
    assert [line["Number"] for line in listed] == [SANDBOX_LINE]
    assert (await sandbox_api.delete(f"{ACCOUNT}/FaxLines/{number}")).status_code == 404


async def test_each_bought_line_is_a_new_number(sandbox_api: httpx.AsyncClient) -> None:
    numbers = {
        (await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "415"})).json()["FaxLine"][
            "Number"
        ]
        for _ in range(3)
    }
    assert len(numbers) == 3
    assert SANDBOX_LINE not in numbers
    assert all(number.startswith("1415") for number in numbers)


@pytest.mark.parametrize("area_code", ["", "41", "abc", "999", "279"])
async def test_an_area_code_not_offered_is_refused(
    sandbox_api: httpx.AsyncClient, area_code: str
) -> None:
    answer = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": area_code})
    assert answer.status_code == 400
    assert "AreaCode" in error_message(answer) or "not available" in error_message(answer)


async def test_when_an_area_code_runs_out_it_is_refused_and_no_longer_offered(
    sandbox_api: httpx.AsyncClient,
) -> None:
    # The 907 pool holds 100 numbers; buy them all.
    for _ in range(100):
        answer = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "907"})
        assert answer.status_code == 200
    offered = await sandbox_api.get("/AreaCodes", params={"StateCode": "AK"})
    assert offered.json() == {"AreaCodes": []}

    refused = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "907"})
    assert refused.status_code == 400
    assert "No fax numbers are free in area code 907" in error_message(refused)

    await sandbox_api.delete(f"{ACCOUNT}/FaxLines/19075550142")
    again = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "907"})
    assert again.json()["FaxLine"]["Number"] == "19075550142"


async def test_area_codes_by_state(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.get("/AreaCodes", params={"StateCode": "CA"})
    codes = answer.json()["AreaCodes"]
    assert {415, 510, 213} <= set(codes)
    assert 279 not in codes  # a code the provider has no numbers in
    assert all(isinstance(code, int) for code in codes)


async def test_every_state_offers_area_codes(sandbox_api: httpx.AsyncClient) -> None:
    assert len(AREA_CODES_BY_STATE) == 51  # the states and DC
    for state in AREA_CODES_BY_STATE:
        answer = await sandbox_api.get("/AreaCodes", params={"StateCode": state.lower()})
        assert answer.json()["AreaCodes"], state


@pytest.mark.parametrize("query", ["", "?StateCode=", "?StateCode=XX"])
async def test_a_missing_or_unknown_state_is_refused(
    sandbox_api: httpx.AsyncClient, query: str
) -> None:
    answer = await sandbox_api.get("/AreaCodes" + query)
    assert answer.status_code == 400
    assert "StateCode" in error_message(answer)


# Sending ---------------------------------------------------------------------------------


async def send(
    api: httpx.AsyncClient, *, params: Any = None, data: Any = None, files: Any = None
) -> httpx.Response:
    return await api.post(SEND, params=params, data=data, files=files)


ONE_PAGE = pdf_document(1)


@pytest.mark.parametrize(
    ("params", "data", "files"),
    [
        ({"To": "14155550123"}, None, {"file": ("a.pdf", ONE_PAGE)}),
        (None, {"To": "+1 (415) 555-0123"}, [("file[]", ("a.pdf", ONE_PAGE))]),
        (None, {"To[0]": "1-415-555-0123"}, [("file[0]", ("a.pdf", ONE_PAGE))]),
        ({"To[]": "14155550123"}, None, [("file[]", ("a.pdf", ONE_PAGE))]),
    ],
    ids=["query-file", "form-file[]", "form-To[0]-file[0]", "query-To[]"],
)
async def test_send_accepts_every_spelling(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, params: Any, data: Any, files: Any
) -> None:
    answer = await send(sandbox_api, params=params, data=data, files=files)
    assert answer.status_code == 200, answer.text
    transmission = answer.json()["Transmission"]
    assert transmission["To"] == "14155550123"
    assert transmission["From"] == SANDBOX_LINE
    assert transmission["StatusCode"] == "P"
    assert transmission["ErrorCode"] is None
    assert transmission["IsInbound"] is False
    assert transmission["Uri"] == f"/v1{SEND}/{transmission['Guid']}"
    assert len(transmission["Guid"]) == 40
    assert transmission["CreatedAt"].isdigit()
    [seen] = sandbox.inspect()
    assert seen.guid == transmission["Guid"]
    assert [file.name for file in seen.files] == ["a.pdf"]


async def test_several_to_and_files_make_one_transmission_per_to(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    files = [
        ("file[1]", ("second.txt", b"page two\n")),
        ("file[0]", ("first.pdf", pdf_document(2))),
    ]
    answer = await send(
        sandbox_api, data={"To[0]": "14155550123", "To[1]": "12125550123"}, files=files
    )
    assert answer.status_code == 200, answer.text
    transmissions = answer.json()["Transmissions"]
    assert [t["To"] for t in transmissions] == ["14155550123", "12125550123"]
    seen = sandbox.inspect()
    assert [s.to for s in seen] == ["14155550123", "12125550123"]
    for item in seen:
        assert [(f.name, f.pages) for f in item.files] == [("first.pdf", 2), ("second.txt", 1)]
    assert seen[0].document_sha256 == seen[1].document_sha256


async def test_send_from_a_chosen_line(sandbox_api: httpx.AsyncClient) -> None:
    bought = await sandbox_api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "212"})
    line = bought.json()["FaxLine"]["Number"]
    answer = await send(
        sandbox_api, params={"To": "14155550123", "From": line}, files={"file": ("a.txt", b"x")}
    )
    assert answer.json()["Transmission"]["From"] == line


@pytest.mark.parametrize(
    ("params", "files", "expected"),
    [
        ({"To": "14155550123", "From": "12125550000"}, True, "not one of this account's"),
        ({"To": "14155550123", "From": "not a number"}, True, "not one of this account's"),
        ({}, True, "Missing To"),
        ({"To": "fax me"}, True, "Invalid To"),
        ({"To": "123"}, True, "Invalid To"),
        ({"To": "14155550123"}, False, "Missing file"),
    ],
)
async def test_bad_sends_are_refused_with_a_message(
    sandbox: Sandbox,
    sandbox_api: httpx.AsyncClient,
    params: dict[str, str],
    files: bool,
    expected: str,
) -> None:
    upload = {"file": ("a.pdf", ONE_PAGE)} if files else None
    answer = await send(sandbox_api, params=params, files=upload)
    assert answer.status_code == 400
    assert expected in error_message(answer)
    assert sandbox.inspect() == []


async def test_a_file_part_under_another_name_is_refused(sandbox_api: httpx.AsyncClient) -> None:
    answer = await send(
        sandbox_api, params={"To": "14155550123"}, files={"document": ("a.pdf", ONE_PAGE)}
    )
    assert answer.status_code == 400
    assert "'document'" in error_message(answer)


async def test_more_than_ten_files_are_refused_at_once(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    files = [("file[]", (f"{n}.txt", b"text\n")) for n in range(11)]
    answer = await send(sandbox_api, params={"To": "14155550123"}, files=files)
    assert answer.status_code == 400
    assert "at most 10 files" in error_message(answer)
    ten = await send(sandbox_api, params={"To": "14155550123"}, files=files[:10])
    assert ten.status_code == 200
    assert len(sandbox.inspect()) == 1


async def test_more_than_30_mb_are_refused_at_once(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    half = b"x" * (15 * 1024 * 1024 + 1)
    files = [("file[]", ("a.txt", half)), ("file[]", ("b.txt", half))]
    answer = await send(sandbox_api, params={"To": "14155550123"}, files=files)
    assert answer.status_code == 400
    assert "at most 30 MB" in error_message(answer)
    assert sandbox.inspect() == []


async def test_get_one_transmission(sandbox_api: httpx.AsyncClient) -> None:
    sent = await send(
        sandbox_api, params={"To": "14155550123"}, files={"file": ("a.pdf", ONE_PAGE)}
    )
    guid = sent.json()["Transmission"]["Guid"]
    answer = await sandbox_api.get(f"{SEND}/{guid}")
    assert answer.status_code == 200
    assert answer.json()["Transmission"]["Guid"] == guid
    missing = await sandbox_api.get(f"{SEND}/{'f' * 40}")
    assert missing.status_code == 404


# Paging ----------------------------------------------------------------------------------


async def test_paging_follows_the_four_uris(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults = FaultSettings(stall_faxes=True)  # pending, so listed: none removed
    # 45 transmissions, sent in 5 sends of 9 destinations each.
    sent: list[str] = []
    for batch in range(5):
        data = {f"To[{n}]": f"1415555{batch + 1}{n:03d}" for n in range(9)}
        answer = await send(sandbox_api, data=data, files={"file": ("a.txt", b"hello\n")})
        sent += [t["Guid"] for t in answer.json()["Transmissions"]]
    newest_first = list(reversed(sent))

    def follow(uri: str) -> httpx.URL:
        return httpx.URL(sandbox_api.base_url).join(uri)

    first = (await sandbox_api.get(SEND)).json()
    assert first["Page"] == 0
    assert first["PageSize"] == 20
    assert first["NumPages"] == 3
    assert first["Total"] == 45
    assert (first["Start"], first["End"]) == (0, 20)
    assert first["PreviousPageUri"] is None
    assert first["FirstPageUri"] == f"/v1{SEND}?Page=0&PageSize=20"
    assert first["LastPageUri"] == f"/v1{SEND}?Page=2&PageSize=20"

    seen = [t["Guid"] for t in first["Transmissions"]]
    page = first
    while page["NextPageUri"] is not None:
        page = (await sandbox_api.get(follow(page["NextPageUri"]))).json()
        seen += [t["Guid"] for t in page["Transmissions"]]
    assert seen == newest_first
    assert page["Page"] == 2
    assert (page["Start"], page["End"]) == (40, 45)
    assert page["Uri"] == first["LastPageUri"]

    previous = (await sandbox_api.get(follow(page["PreviousPageUri"]))).json()
    assert previous["Page"] == 1
    assert [t["Guid"] for t in previous["Transmissions"]] == newest_first[20:40]
    back = (await sandbox_api.get(follow(previous["FirstPageUri"]))).json()
    assert [t["Guid"] for t in back["Transmissions"]] == newest_first[:20]


async def test_page_size_is_capped_and_bad_values_are_refused(
    sandbox_api: httpx.AsyncClient,
) -> None:
    empty = (await sandbox_api.get(SEND, params={"PageSize": 500})).json()
    assert empty["PageSize"] == 100
    assert empty["Transmissions"] == []
    assert empty["NumPages"] == 1
    assert empty["NextPageUri"] is None
    assert empty["PreviousPageUri"] is None
    for params in ({"Page": -1}, {"Page": "x"}, {"PageSize": 0}):
        answer = await sandbox_api.get(SEND, params=params)
        assert answer.status_code == 400, params


async def test_unknown_paths_answer_json_404(sandbox_api: httpx.AsyncClient) -> None:
    answer = await sandbox_api.get("/_sandbox/transmissions")  # under /v1: not the control API
    assert answer.status_code == 404
    assert error_message(answer)
