"""The whole daemon on the Dropbox Fax API v3, chosen by settings alone: a queued fax goes
out as a v3 send carrying its job's id, and the provider's signed event settles it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate.app import started
from faxgate.domain.jobs import JobState
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.events import EVENT_ANSWER, event_hash
from tests.conftest import wait_for
from tests.daemon import CALLBACK_TOKEN, fast_settings, queue, settled
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
