"""The HelloFax client against the sandbox, over real HTTP: every call, every failure class."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.domain.provider import Ambiguous, NotSent, ProviderFault, RateLimited, Refused
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.models import Transmission, Upload
from faxgate.hellofax.sandbox import Sandbox
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_LINE,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    pdf_document,
    wait_for,
)

# Reading a sent fax's every field needs a sandbox that keeps it readable once sent.
KEEPING = pytest.mark.parametrize("removal", ["nothing"])


def pdf(pages: int, name: str = "doc.pdf") -> Upload:
    return Upload(name=name, content=pdf_document(pages), content_type="application/pdf")


async def settled(client: HelloFaxClient, guid: str) -> Transmission:
    async def final() -> Transmission | None:
        tx = await client.get_transmission(guid)
        return (
            tx
            if tx.status_code in (StatusCode.SENT, StatusCode.ERROR, StatusCode.ON_HOLD)
            else None
        )

    result: Transmission = await wait_for(final, what=f"transmission {guid} to settle")
    return result


async def test_account_and_callback_urls(client: HelloFaxClient) -> None:
    account = await client.get_account()
    assert account.guid == SANDBOX_GUID
    updated = await client.update_account(
        inbound_url="http://127.0.0.1:1/in", outbound_url="http://127.0.0.1:1/out"
    )
    assert updated.default_inbound_fax_callback_url == "http://127.0.0.1:1/in"
    assert (
        await client.get_account()
    ).default_outbound_fax_callback_url == "http://127.0.0.1:1/out"


async def test_fax_lines_and_area_codes(client: HelloFaxClient) -> None:
    assert [line.number for line in await client.list_fax_lines()] == [SANDBOX_LINE]
    codes = await client.area_codes("CA")
    assert "415" in codes
    line = await client.buy_fax_line(codes[0])
    assert line.number.startswith("1" + codes[0])
    assert line.number in [item.number for item in await client.list_fax_lines()]
    await client.delete_fax_line(line.number)
    assert line.number not in [item.number for item in await client.list_fax_lines()]
    with pytest.raises(Refused):
        await client.buy_fax_line("999")


@KEEPING
async def test_send_one_fax_and_follow_it_to_sent(client: HelloFaxClient, tmp_path: Path) -> None:
    document = tmp_path / "letter.pdf"
    document.write_bytes(pdf_document(3))
    (tx,) = await client.send(
        "14155550123",
        [Upload(name="letter.pdf", content=document, content_type="application/pdf")],
        from_line=SANDBOX_LINE,
        cover_to="Legal",
        cover_message="Please sign",
    )
    assert tx.status_code is StatusCode.PENDING
    assert tx.to == "14155550123"
    done = await settled(client, tx.guid)
    assert done.status_code is StatusCode.SENT
    assert done.num_pages_billed == 4  # three pages and the cover page


@KEEPING
async def test_send_to_several_numbers_with_several_files(client: HelloFaxClient) -> None:
    sent = await client.send(["14155550123", "14155550124"], [pdf(1, "a.pdf"), pdf(2, "b.pdf")])
    assert sorted(tx.to for tx in sent) == ["14155550123", "14155550124"]
    for tx in sent:
        assert (await settled(client, tx.guid)).num_pages_billed == 3


@pytest.mark.parametrize(
    ("number", "error"),
    [("14155550001", ErrorCode.BUSY), ("14155550003", ErrorCode.UNALLOCATED)],
)
async def test_failures_carry_their_error_code(
    client: HelloFaxClient, number: str, error: ErrorCode
) -> None:
    (tx,) = await client.send(number, [pdf(1)])
    done = await settled(client, tx.guid)
    assert done.status_code is StatusCode.ERROR
    assert done.error_code is error


async def test_a_sent_fax_is_removed_and_answers_the_providers_404(
    client: HelloFaxClient, sandbox: Sandbox
) -> None:
    (tx,) = await client.send("14155550123", [pdf(1)])
    await wait_for(
        lambda: [t for t in sandbox.inspect() if t.guid == tx.guid and t.removed],
        what="the sent fax removed",
    )
    with pytest.raises(Refused) as caught:
        await client.get_transmission(tx.guid)
    assert caught.value.status == 404
    assert "Transmission not found or not accessible." in str(caught.value)
    assert [t.guid async for t in client.iter_transmissions()] == []
    (seen,) = sandbox.inspect()  # the inspection still sees it, as sent
    assert (seen.status, seen.removed) == ("S", True)


@KEEPING  # sent faxes would be removed while the pages are read
async def test_paging_through_every_transmission(client: HelloFaxClient) -> None:
    sent = await client.send([f"1415555{n:04d}" for n in range(100, 125)], [pdf(1)])
    first = await client.list_transmissions(page_size=10)
    assert len(first.transmissions) == 10
    assert first.next_page_uri
    seen = [tx.guid async for tx in client.iter_transmissions(page_size=10)]
    assert sorted(seen) == sorted(tx.guid for tx in sent)
    assert client.request_counts[("list_transmissions", 200)] >= 3


async def test_wrong_credentials_are_refused_without_echo(sandbox: Sandbox) -> None:
    async with HelloFaxClient(
        sandbox.base_url, SANDBOX_GUID, SANDBOX_USERNAME, "wrong-pass"
    ) as api:
        with pytest.raises(Refused) as caught:
            await api.get_account()
    assert caught.value.status == 401
    assert "wrong-pass" not in str(caught.value)


async def test_unknown_account_is_refused(sandbox: Sandbox) -> None:
    async with HelloFaxClient(
        sandbox.base_url, "f" * 40, SANDBOX_USERNAME, SANDBOX_PASSWORD
    ) as api:
        with pytest.raises(Refused) as caught:
            await api.get_account()
    assert caught.value.status == 404


async def test_a_from_that_is_not_a_line_is_refused(
    client: HelloFaxClient, sandbox: Sandbox
) -> None:
    with pytest.raises(Refused):
        await client.send("14155550123", [pdf(1)], from_line="12125550000")
    assert sandbox.inspect() == []


async def test_rate_limit_storm(client: HelloFaxClient, sandbox: Sandbox) -> None:
    sandbox.faults.rate_limit_next = 1
    with pytest.raises(RateLimited) as caught:
        await client.send("14155550123", [pdf(1)])
    assert "200 transmissions" in caught.value.message
    assert sandbox.inspect() == []
    assert len(await client.send("14155550123", [pdf(1)])) == 1


async def test_provider_faults(client: HelloFaxClient, sandbox: Sandbox) -> None:
    sandbox.faults.error_rate = 1.0
    with pytest.raises(ProviderFault):
        await client.get_account()
    with pytest.raises(ProviderFault):
        await client.send("14155550123", [pdf(1)])


async def test_a_dropped_connection_after_the_upload_is_ambiguous(
    client: HelloFaxClient, sandbox: Sandbox
) -> None:
    sandbox.faults.drop_after_upload_next = 1
    with pytest.raises(Ambiguous):
        await client.send("14155550123", [pdf(1)])
    assert len(sandbox.inspect()) == 1, "the fax was accepted although no answer came"


async def test_a_sandbox_that_is_down_means_not_sent(unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/v1"
    async with HelloFaxClient(url, SANDBOX_GUID, SANDBOX_USERNAME, SANDBOX_PASSWORD) as api:
        with pytest.raises(NotSent):
            await api.send("14155550123", [pdf(1)])
