"""A fax's life in the sandbox: P, T, then S, E or H; pages billed; the 200 limit; restarts.

The final statuses are read through the API, so this module's sandbox keeps sent faxes
(removal = nothing); removing them is tested in test_sandbox_removal.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate.hellofax.sandbox import Sandbox
from faxgate.hellofax.sandbox.shapes import RATE_LIMIT_MESSAGE
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_LINE,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    CallbackReceiver,
    http_client,
    pdf_document,
    sandbox_settings,
    wait_for,
)

ACCOUNT = f"/Accounts/{SANDBOX_GUID}"
KEEP = "nothing"


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with Sandbox(sandbox_settings(tmp_path / "sandbox", removal=KEEP)) as running:
        yield running


SEND = f"{ACCOUNT}/Transmissions"
FINAL = ("S", "E", "H")


async def status_of(api: httpx.AsyncClient, guid: str) -> dict[str, Any]:
    transmission: dict[str, Any] = (await api.get(f"{SEND}/{guid}")).json()["Transmission"]
    return transmission


async def until_final(api: httpx.AsyncClient, guid: str) -> dict[str, Any]:
    async def final() -> dict[str, Any] | None:
        transmission = await status_of(api, guid)
        return transmission if transmission["StatusCode"] in FINAL else None

    result: dict[str, Any] = await wait_for(final, what=f"transmission {guid} to end")
    return result


async def send_one(
    api: httpx.AsyncClient, to: str, files: Any = None, data: Any = None
) -> dict[str, Any]:
    answer = await api.post(
        SEND, params={"To": to}, files=files or {"file": ("a.pdf", pdf_document(1))}, data=data
    )
    assert answer.status_code == 200, answer.text
    transmission: dict[str, Any] = answer.json()["Transmission"]
    return transmission


async def test_outcomes_follow_the_number_rules(sandbox_api: httpx.AsyncClient) -> None:
    expected = {
        "14155550001": ("E", "B"),
        "14155550002": ("E", "N"),
        "14155550003": ("E", "A"),
        "14155550004": ("E", "D"),
        "14155550005": ("E", "L"),
        "14155550006": ("E", "U"),
        "14155550007": ("S", None),
        "14155550123": ("S", None),
    }
    data = {f"To[{n}]": number for n, number in enumerate(expected)}
    answer = await sandbox_api.post(SEND, data=data, files={"file": ("a.pdf", pdf_document(1))})
    outcomes = {}
    for transmission in answer.json()["Transmissions"]:
        final = await until_final(sandbox_api, transmission["Guid"])
        outcomes[final["To"]] = (final["StatusCode"], final["ErrorCode"])
        assert final["NumPagesBilled"] == (1 if final["StatusCode"] == "S" else 0)
    assert outcomes == expected


async def test_a_fax_is_pending_then_transmitting_then_sent(tmp_path: Path) -> None:
    # Slow enough to watch each status: P for about 50 ms, T for about 300 ms.
    settings = sandbox_settings(tmp_path, speed=0.005, removal=KEEP)
    async with (
        Sandbox(settings) as sandbox,
        http_client(base_url=sandbox.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as api,
    ):
        sent = await send_one(api, "14155550123")
        assert sent["StatusCode"] == "P"
        assert sent["NumPagesBilled"] == 0
        seen = {"P"}

        async def status_after_p() -> str | None:
            status: str = (await status_of(api, sent["Guid"]))["StatusCode"]
            seen.add(status)
            return status if status != "P" else None

        assert await wait_for(status_after_p) == "T"
        transmitting = await status_of(api, sent["Guid"])
        assert transmitting["NumPagesBilled"] == 1
        final = await until_final(api, sent["Guid"])
        assert final["StatusCode"] == "S"
        assert seen == {"P", "T"}
        assert int(final["UpdatedAt"]) >= int(final["CreatedAt"])


async def test_pages_billed_are_the_documents_pages_plus_the_cover(
    sandbox_api: httpx.AsyncClient,
) -> None:
    text = "".join(f"line {n}\n" for n in range(61))  # 60 lines a page: 2 pages
    files = [
        ("file[0]", ("three.pdf", pdf_document(3))),
        ("file[1]", ("notes.txt", text.encode())),
    ]
    sent = await send_one(
        sandbox_api, "14155550123", files=files, data={"CoverPageMessage": "Hello"}
    )
    final = await until_final(sandbox_api, sent["Guid"])
    assert final["StatusCode"] == "S"
    assert final["NumPagesBilled"] == 3 + 2 + 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.pdf", b"%PDF-1.4\nthis is not a PDF body at all\n"),
        ("scan", b"\x00\x01\x02\x03 binary junk \xff\xfe"),
        ("program.exe", b"MZ\x90\x00"),
        ("photo.png", b"plain text, not a PNG"),
    ],
)
async def test_a_file_that_is_no_readable_document_fails_after_conversion(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient, name: str, content: bytes
) -> None:
    sandbox.faults.stall_faxes = True
    sent = await send_one(sandbox_api, "14155550123", files={"file": (name, content)})
    assert sent["StatusCode"] == "P"  # accepted: the failure comes with conversion
    assert (await status_of(sandbox_api, sent["Guid"]))["StatusCode"] == "P"
    sandbox.faults.stall_faxes = False
    final = await until_final(sandbox_api, sent["Guid"])
    assert (final["StatusCode"], final["ErrorCode"], final["NumPagesBilled"]) == ("E", "U", 0)


async def test_an_unconfirmed_account_puts_faxes_on_hold(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.set_confirmed(False)
    held = await until_final(sandbox_api, (await send_one(sandbox_api, "14155550123"))["Guid"])
    assert (held["StatusCode"], held["ErrorCode"], held["NumPagesBilled"]) == ("H", None, 0)

    async with http_client() as control:
        answer = await control.post(
            sandbox.base_url.replace("/v1", "/_sandbox/account"), json={"confirmed": True}
        )
    assert answer.json()["confirmed"] is True
    sent = await until_final(sandbox_api, (await send_one(sandbox_api, "14155550123"))["Guid"])
    assert sent["StatusCode"] == "S"
    assert (await status_of(sandbox_api, held["Guid"]))["StatusCode"] == "H"  # H is final


async def test_the_201st_pending_fax_gets_429(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.stall_faxes = True  # nothing leaves P until released
    data = {f"To[{n}]": f"1212555{n:04d}" for n in range(10, 210)}
    answer = await sandbox_api.post(SEND, data=data, files={"file": ("a.txt", b"hello\n")})
    assert answer.status_code == 200
    assert len(answer.json()["Transmissions"]) == 200

    refused = await sandbox_api.post(
        SEND, params={"To": "14155550123"}, files={"file": ("a.txt", b"hello\n")}
    )
    assert refused.status_code == 429
    assert refused.text == RATE_LIMIT_MESSAGE
    assert refused.headers["Content-Type"].startswith("text/plain")
    assert len(sandbox.inspect()) == 200

    sandbox.faults.stall_faxes = False

    async def accepted_again() -> bool:
        retry = await sandbox_api.post(
            SEND, params={"To": "14155550123"}, files={"file": ("a.txt", b"hello\n")}
        )
        return retry.status_code == 200

    await wait_for(accepted_again, what="a send to be accepted once faxes leave P")


async def test_a_send_that_would_pass_200_pending_is_refused_whole(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.stall_faxes = True
    data = {f"To[{n}]": f"1212555{n:04d}" for n in range(10, 209)}  # 199
    assert (await sandbox_api.post(SEND, data=data, files={"file": ("a.txt", b"x")})).is_success
    two = {"To[0]": "14155550123", "To[1]": "14155550124"}
    refused = await sandbox_api.post(SEND, data=two, files={"file": ("a.txt", b"x")})
    assert refused.status_code == 429
    assert len(sandbox.inspect()) == 199


async def test_a_restart_keeps_state_and_finishes_what_was_in_flight(
    tmp_path: Path, callback_receiver: CallbackReceiver
) -> None:
    settings = sandbox_settings(tmp_path / "state", removal=KEEP)
    callback_receiver.answer_with(500)  # the first callback fails: a retry is pending
    async with (
        Sandbox(settings) as first,
        http_client(base_url=first.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as api,
    ):
        await api.post(ACCOUNT, data={"DefaultOutboundFaxCallbackUrl": callback_receiver.url()})
        bought = (await api.post(f"{ACCOUNT}/FaxLines", data={"AreaCode": "212"})).json()
        await api.delete(f"{ACCOUNT}/FaxLines/{SANDBOX_LINE}")
        done = await send_one(api, "14155550123")
        await wait_for(lambda: callback_receiver.received, what="the first callback")
        first.faults.stall_faxes = True
        in_flight = await send_one(api, "14155550124")

    async with (
        Sandbox(settings) as second,
        http_client(base_url=second.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD)) as api,
    ):
        lines = (await api.get(f"{ACCOUNT}/FaxLines")).json()["FaxLines"]
        assert [line["Number"] for line in lines] == [bought["FaxLine"]["Number"]]
        account = (await api.get(ACCOUNT)).json()["Account"]
        assert account["DefaultOutboundFaxCallbackUrl"] == callback_receiver.url()
        assert (await until_final(api, in_flight["Guid"]))["StatusCode"] == "S"

        def delivered() -> set[str]:
            return {
                attempt.transmission_guid
                for attempt in second.callback_attempts()
                if attempt.status == 200
            }

        await wait_for(
            lambda: delivered() == {done["Guid"], in_flight["Guid"]}, what="both callbacks"
        )
        retried = [a for a in second.callback_attempts() if a.transmission_guid == done["Guid"]]
        assert [(a.attempt, a.status) for a in retried] == [(1, 500), (2, 200)]
        assert len(second.inspect()) == 2


async def test_one_fax_that_cannot_move_does_not_stop_the_others(
    sandbox: Sandbox, sandbox_api: httpx.AsyncClient
) -> None:
    sandbox.faults.stall_faxes = True
    broken = await send_one(sandbox_api, SANDBOX_LINE, files={"file": ("own.txt", b"mine\n")})
    # Its document vanishes, so it cannot arrive at the own line when it is sent.
    for stored in (sandbox.settings.state_dir / "documents").iterdir():
        stored.unlink()
    healthy = await send_one(sandbox_api, "14155550123", files={"file": ("b.txt", b"other\n")})
    sandbox.faults.stall_faxes = False
    assert (await until_final(sandbox_api, healthy["Guid"]))["StatusCode"] == "S"
    assert (await status_of(sandbox_api, broken["Guid"]))["StatusCode"] == "T"
