"""The whole daemon on the Dropbox Fax API v3, chosen by settings alone: a queued fax goes
out as a v3 send carrying its job's id, and the provider's signed event settles it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate.app import Daemon, started
from faxgate.domain.jobs import JobState
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.events import EVENT_ANSWER, event_hash
from faxgate.dropbox_fax.sandbox import DropboxFaxSandbox, inject_inbound
from tests.conftest import pdf_document, wait_for
from tests.daemon import (
    CALLBACK_TOKEN,
    assert_sent_once_per_call,
    fast_settings,
    queue,
    queue_many,
    settled,
)
from tests.dropbox_fax.sources import fixture_case
from tests.dropbox_fax.test_client import FakeV3, answer

API_KEY = "daemon-test-api-key-0123456789"


@pytest.fixture
async def provider() -> AsyncIterator[FakeV3]:
    fake = FakeV3()
    await fake.start()
    yield fake
    await fake.stop()


def fax_event(fax: dict[str, Any], event_type: str, status: str) -> str:
    signed = {"event_time": "1750105090", "event_type": event_type}
    signed["event_hash"] = event_hash(API_KEY, signed["event_time"], event_type)
    transmission = {**fax["transmissions"][0], "status_code": status}
    return json.dumps({"event": signed, "fax": {**fax, "transmissions": [transmission]}})


async def test_a_fax_goes_out_on_v3_and_its_event_settles_it(
    tmp_path: Path, provider: FakeV3
) -> None:
    sent = fixture_case("FaxResponse.json")
    provider.on("POST", "/fax/send", answer(sent))
    provider.on("GET", f"/fax/{sent['fax']['fax_id']}", answer(sent))
    settings = fast_settings(
        tmp_path / "state",
        provider={"kind": "dropbox_fax", "api_key": API_KEY, "base_url": provider.base_url},
    )
    async with started(settings) as daemon:
        assert isinstance(daemon.provider, DropboxFaxClient)
        job = await queue(daemon, "+18005550199")

        def submitted() -> bool:
            current = daemon.store.get_job(job.id)
            return current is not None and current.state is JobState.SUBMITTED

        await wait_for(submitted, what="the job handed to v3")
        (send,) = [seen for seen in provider.seen if seen.path == "/fax/send"]
        assert send.fields["recipient"] == ["18005550199"]
        assert send.fields["title"] == [f"faxgate {job.id}"]
        assert [name for name, _, _ in send.files] == ["files[]", "files[]"]

        fax = {**sent["fax"], "title": f"faxgate {job.id}"}
        events = f"http://127.0.0.1:{daemon.http.port}/callbacks/{CALLBACK_TOKEN}/events"
        async with httpx.AsyncClient() as client:
            posted = await client.post(
                events, files={"json": (None, fax_event(fax, "fax_sent", "success"))}
            )
        assert (posted.status_code, posted.text) == (200, EVENT_ANSWER)
        (done,) = await settled(daemon, [job])
        assert done.state is JobState.SENT
        assert done.provider_guid == sent["fax"]["fax_id"]


# --- the whole product on the built-in sandbox, switched to v3 by one setting --------------


@pytest.fixture
async def on_v3(tmp_path: Path) -> AsyncIterator[Daemon]:
    settings = fast_settings(
        tmp_path / "state",
        sandbox={"api": "dropbox_fax"},
        inbound={"default_folder": str(tmp_path / "inbox")},
    )
    async with started(settings) as running:
        yield running


async def test_the_built_in_sandbox_speaks_v3_by_one_setting(on_v3: Daemon) -> None:
    assert isinstance(on_v3.sandbox, DropboxFaxSandbox)
    assert isinstance(on_v3.provider, DropboxFaxClient)
    sent = await queue(on_v3, "+14155550123")
    unallocated = await queue(on_v3, "+14155550003")  # v3's error_bad_destination
    done = {job.id: job for job in await settled(on_v3, [sent, unallocated])}
    assert done[sent.id].state is JobState.SENT
    assert done[unallocated.id].state is JobState.FAILED
    # Settled by the sandbox's signed events to this daemon, each sent once.
    outbound = [t.to for t in on_v3.sandbox.inspect() if not t.is_inbound]
    assert sorted(outbound) == ["14155550003", "14155550123"]
    assert on_v3.store.events(sent.id)[-1].data["source"] == "callback"
    assert on_v3.provider.request_counts[("send", 200)] >= 2


async def test_an_inbound_fax_on_v3_lands_in_the_inbox(on_v3: Daemon, tmp_path: Path) -> None:
    assert isinstance(on_v3.sandbox, DropboxFaxSandbox)
    document = tmp_path / "in.pdf"
    document.write_bytes(pdf_document(2))
    fax = await inject_inbound(on_v3.sandbox.base_url, "14155550100", "13105550111", document)

    def arrived() -> list[Path] | None:
        found = sorted((tmp_path / "inbox").glob("*.pdf"))
        return found or None

    (written,) = await wait_for(arrived, what="the inbound fax in the folder")
    assert written.read_bytes() == document.read_bytes()
    (stored,) = on_v3.store.recent_inbound(10)
    assert stored.provider_guid == fax["fax_id"]


# --- the rate limit under a burst ------------------------------------------------------------


async def test_a_burst_of_faxes_stays_under_the_rate_limit_and_every_fax_ends(
    tmp_path: Path,
) -> None:
    # Test mode: 10 requests a window for the client and for the sandbox's test-mode
    # sends, the window shortened to 0.1 s. 200 faxes need 200 sends, with the polls and
    # reads competing for the same budget: at least 20 windows' worth.
    settings = fast_settings(
        tmp_path / "state",
        sandbox={"api": "dropbox_fax", "rate_window": "0.1s"},
        provider={"test_mode": True},
    )
    async with started(settings) as daemon:
        assert isinstance(daemon.sandbox, DropboxFaxSandbox)
        jobs = await queue_many(daemon, [f"+1415556{n:04d}" for n in range(100, 300)])
        ended = await settled(daemon, jobs, deadline=60)
        assert {job.state for job in ended} == {JobState.SENT}
        rate = daemon.sandbox.rate()
        assert rate.refused == 0  # the sandbox never had to say 429
        assert rate.test_mode_peak <= 10
        assert_sent_once_per_call(daemon.sandbox, daemon, jobs)
        async with httpx.AsyncClient() as http:
            shown = await http.get(daemon.sandbox.base_url.removesuffix("/v3") + "/_sandbox/rate")
        assert shown.json()["refused"] == 0


# --- moving from v1 to v3 with faxes in flight -----------------------------------------------


async def test_a_switch_from_v1_to_v3_loses_and_repeats_no_fax_in_flight(tmp_path: Path) -> None:
    # Stopped on v1 with faxes at the provider and one queued for later; started again on
    # v3 (the same sandbox account behind both faces). Every fax ends, each sent once; the
    # queued one goes out on v3 with its job's id in the title.
    on_v1 = fast_settings(tmp_path / "state", sandbox={"api": "hellofax"})
    async with started(on_v1) as first:
        assert first.sandbox is not None
        (done_on_v1,) = await settled(first, [await queue(first, "+14155550123")])
        first.sandbox.faults.stall_faxes = True  # held by the provider over the switch
        in_flight = [await queue(first, f"+1415555{n:04d}") for n in (124, 125, 126)]

        def with_the_provider() -> bool:
            states = [first.store.get_job(job.id) for job in in_flight]
            return all(job is not None and job.state is JobState.SUBMITTED for job in states)

        await wait_for(with_the_provider, what="the faxes with the provider")
        first.dispatcher.stop()  # nothing more leaves on v1
        waiting = await queue(first, "+14155550127")  # queued at the switch: for v3

    on_v3 = fast_settings(tmp_path / "state", sandbox={"api": "dropbox_fax"})
    async with started(on_v3) as second:
        assert isinstance(second.sandbox, DropboxFaxSandbox)
        ended = await settled(second, [done_on_v1, *in_flight, waiting])
        states = {job.id: job.state for job in ended}
        assert states[done_on_v1.id] is states[waiting.id] is JobState.SENT
        # Those that ended while faxgate was down (the sandbox's faults do not survive a
        # restart) and were removed before a callback reached the new daemon are presumed
        # sent, as docs/providers.md says; none failed, none went twice.
        assert {states[job.id] for job in in_flight} <= {JobState.SENT, JobState.PRESUMED_SENT}
        assert_sent_once_per_call(second.sandbox, second, ended)
        assert second.sandbox.duplicates() == []
        (last,) = [t for t in second.sandbox.inspect() if t.to == "14155550127"]
        assert last.title == f"faxgate {waiting.id}"


async def test_requests_made_by_another_process_on_the_account_are_kept_to(
    tmp_path: Path,
) -> None:
    # A command in another process (its own client, its own count) spends 99 of the 100
    # requests of a window while the daemon is idle; then 20 faxes are queued. The daemon
    # learns what remains from its first answer and waits for the reset: no 429.
    settings = fast_settings(
        tmp_path / "state", sandbox={"api": "dropbox_fax", "rate_window": "2s"}
    )
    async with started(settings) as daemon:
        assert isinstance(daemon.sandbox, DropboxFaxSandbox)
        async with DropboxFaxClient(
            settings.provider_api_key(), daemon.sandbox.base_url, rate_window=2.0
        ) as other:
            async with httpx.AsyncClient() as http:
                auth = (settings.provider_api_key(), "")
                answer = await http.get(daemon.sandbox.base_url + "/account", auth=auth)
            reset = float(answer.headers["X-Ratelimit-Reset"])
            # What the daemon was last told (on start) has lapsed: a fresh window.
            await wait_for(lambda: time.time() > reset + 0.1, timeout=5, what="the reset")
            for _ in range(98):
                await other.account()
        jobs = await queue_many(daemon, [f"+1415557{n:04d}" for n in range(100, 120)])
        ended = await settled(daemon, jobs, deadline=30)
        assert {job.state for job in ended} == {JobState.SENT}
        assert daemon.sandbox.rate().refused == 0
        assert_sent_once_per_call(daemon.sandbox, daemon, jobs)
