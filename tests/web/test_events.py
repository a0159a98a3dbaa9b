"""The Dropbox Fax API v3's events at faxgate's callback endpoint, over real HTTP: signed
ones applied to their jobs as v1 callbacks are, and answered with the exact words; forged,
unsigned and unreadable ones refused without a change."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate import metrics
from faxgate.domain.jobs import JobState, RetryPolicy
from faxgate.domain.provider import Unavailable
from faxgate.dropbox_fax.events import EVENT_ANSWER, event_hash
from faxgate.sending.tracker import Tracker
from faxgate.store import Store
from faxgate.web.callbacks import FetchDocument, InboundHandler
from faxgate.web.server import build_app, start_http
from tests.sending.test_tracker import submitted_job

TOKEN = "t0k3n-for-the-callbacks_0123456789"
API_KEY = "the-v3-api-key-0123456789abcdef"
FAX_ID = "c2e9691c85d9d6fa6ae773842e3680b2b8650f1d"
EVENT_TIME = "1750105090"
S = JobState


def event(
    event_type: str = "fax_sent",
    status: str = "success",
    *,
    key: str | None = API_KEY,
    fax_id: str | None = FAX_ID,
) -> dict[str, Any]:
    """A v3 event as the provider posts it, signed with `key` (None: no hash)."""
    fax: dict[str, Any] = {
        "title": "faxgate job",
        "metadata": [],
        "created_at": 1750105080,
        "sender": "14155557068",
        "transmissions": [{"recipient": "14155550123", "status_code": status}],
    }
    if fax_id is not None:
        fax["fax_id"] = fax_id
    signed: dict[str, Any] = {"event_time": EVENT_TIME, "event_type": event_type}
    if key is not None:
        signed["event_hash"] = event_hash(key, EVENT_TIME, event_type)
    return {"event": signed | {"event_metadata": {}}, "account_guid": "a" * 40, "fax": fax}


def counted(result: str) -> float:
    labels = {"direction": "event", "result": result}
    return metrics.REGISTRY.get_sample_value("faxgate_callbacks_total", labels) or 0.0


@contextlib.asynccontextmanager
async def serving(
    store: Store,
    key: str = API_KEY,
    inbound: InboundHandler | None = None,
    fetch: FetchDocument | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the callback endpoint, served as long as the block runs."""
    app = build_app(
        token=TOKEN,
        tracker=Tracker(store, RetryPolicy()),
        max_body=8192,
        event_key=key,
        inbound=inbound,
        fetch_document=fetch,
    )
    server = await start_http(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}", timeout=10
        ) as client:
            yield client
    finally:
        await server.stop()


@pytest.fixture
async def http(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(store) as client:
        yield client


async def post(http: httpx.AsyncClient, payload: dict[str, Any] | str) -> httpx.Response:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return await http.post(f"/callbacks/{TOKEN}/events", files={"json": (None, body)})


def state(store: Store, job_id: str) -> JobState:
    job = store.get_job(job_id)
    assert job is not None
    return job.state


async def test_a_signed_event_settles_its_job_and_is_answered_as_the_provider_asks(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, FAX_ID)
    before = counted("accepted")
    answer = await post(http, event())
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert answer.headers["content-type"].startswith("text/plain")
    assert state(store, job.id) is S.SENT
    assert store.events(job.id)[-1].data["source"] == "callback"
    assert counted("accepted") == before + 1


async def test_a_replayed_event_changes_nothing_more(http: httpx.AsyncClient, store: Store) -> None:
    job = submitted_job(store, FAX_ID)
    for _ in range(3):
        answer = await post(http, event())
        assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert state(store, job.id) is S.SENT
    assert len(store.notifications(job.id)) == 1  # one report, not three


async def test_busy_is_a_failure_dialled_again_per_the_retry_policy(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, FAX_ID)
    answer = await post(http, event("fax_busy", "error_busy"))
    assert answer.status_code == 200
    assert state(store, job.id) is S.QUEUED  # tried again later: busy is retried
    current = store.get_job(job.id)
    assert current is not None
    assert current.attempt == job.attempt + 1


async def test_the_outcome_comes_from_the_status_not_the_event_type(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, FAX_ID)
    answer = await post(http, event("transmission_disconnected", "transmitting"))
    assert answer.status_code == 200
    assert state(store, job.id) is S.TRANSMITTING


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (event(key="someone-elses-key"), "mismatch"),
        (event(key=None), "missing"),
    ],
)
async def test_a_forged_or_unsigned_event_is_refused_and_logged_without_its_body(
    http: httpx.AsyncClient,
    store: Store,
    caplog: pytest.LogCaptureFixture,
    payload: dict[str, Any],
    why: str,
) -> None:
    job = submitted_job(store, FAX_ID)
    before = counted("bad_hash")
    with caplog.at_level(logging.WARNING, logger="faxgate.web"):
        answer = await post(http, payload)
    assert answer.status_code == 401
    assert answer.text != EVENT_ANSWER
    assert state(store, job.id) is S.SUBMITTED
    assert counted("bad_hash") == before + 1
    assert any(why in record.getMessage() for record in caplog.records)
    assert not any("14155550123" in record.getMessage() for record in caplog.records)


async def test_without_an_api_key_no_event_is_believed(store: Store) -> None:
    job = submitted_job(store, FAX_ID)
    async with serving(store, key="") as client:
        answer = await post(client, event(key=""))
    assert answer.status_code == 401
    assert state(store, job.id) is S.SUBMITTED


async def test_a_status_nobody_published_moves_nothing_but_is_answered(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, FAX_ID)
    answer = await post(http, event("fax_sent", "queued_for_the_moon"))
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert state(store, job.id) is S.SUBMITTED


async def test_an_event_for_a_fax_no_job_holds_is_kept_for_reconciling(
    http: httpx.AsyncClient, store: Store
) -> None:
    answer = await post(http, event())
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    (kept,) = store.unmatched_reports()
    assert kept.guid == FAX_ID


async def test_events_that_are_not_about_a_fax_are_answered_and_ignored(
    http: httpx.AsyncClient, store: Store
) -> None:
    answer = await post(http, event("callback_test"))
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert store.unmatched_reports() == []


async def test_an_inbound_fax_waits_at_the_provider_while_none_is_taken(
    http: httpx.AsyncClient,
) -> None:
    answer = await post(http, event("fax_received"))
    assert answer.status_code == 503


class Received:
    """An inbound handler that keeps what it was given, as the receiver would store it."""

    def __init__(self) -> None:
        self.faxes: list[tuple[dict[str, Any], list[tuple[str, bytes]]]] = []

    async def __call__(self, transaction: dict[str, Any], files: list[tuple[str, Path]]) -> None:
        self.faxes.append((transaction, [(name, path.read_bytes()) for name, path in files]))


async def test_an_inbound_fax_is_fetched_by_its_id_and_stored_as_on_v1(store: Store) -> None:
    fetched: list[str] = []
    pdf = b"%PDF-1.4 an inbound fax"

    async def fetch(fax_id: str) -> bytes:
        fetched.append(fax_id)
        return pdf

    received = Received()
    async with serving(store, inbound=received, fetch=fetch) as client:
        answer = await post(client, event("fax_received", "success"))
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert fetched == [FAX_ID]
    ((transaction, files),) = received.faxes
    assert transaction["Guid"] == FAX_ID
    assert transaction["IsInbound"] is True
    assert (transaction["To"], transaction["From"]) == ("14155550123", "14155557068")
    assert files == [(f"{FAX_ID}.pdf", pdf)]


async def test_an_inbound_fax_that_comes_with_its_file_is_not_fetched(store: Store) -> None:
    received = Received()
    body = json.dumps(event("fax_received", "success"))
    pdf = b"%PDF-1.4 sent along"
    async with serving(store, inbound=received) as client:  # nothing to fetch with
        answer = await client.post(
            f"/callbacks/{TOKEN}/events",
            files={"json": (None, body), "file": ("fax.pdf", pdf, "application/pdf")},
        )
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    ((transaction, files),) = received.faxes
    assert transaction["Guid"] == FAX_ID
    assert files == [("fax.pdf", pdf)]


async def test_an_inbound_fax_whose_file_cannot_be_fetched_is_asked_for_again(
    store: Store,
) -> None:
    async def fetch(fax_id: str) -> bytes:
        raise Unavailable("the provider did not answer")

    received = Received()
    async with serving(store, inbound=received, fetch=fetch) as client:
        answer = await post(client, event("fax_received", "success"))
    assert answer.status_code == 503  # the provider keeps it and tells us again
    assert received.faxes == []


@pytest.mark.parametrize("body", ["not json", json.dumps({"no": "event"}), "[]"])
async def test_a_body_that_is_no_event_is_a_bad_request(http: httpx.AsyncClient, body: str) -> None:
    assert (await post(http, body)).status_code == 400


async def test_a_fax_without_an_id_is_answered_but_applies_nothing(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, FAX_ID)
    answer = await post(http, event(fax_id=None))
    assert (answer.status_code, answer.text) == (200, EVENT_ANSWER)
    assert state(store, job.id) is S.SUBMITTED


async def test_a_wrong_token_is_not_found(http: httpx.AsyncClient) -> None:
    body = json.dumps(event())
    answer = await http.post("/callbacks/wrong-token/events", files={"json": (None, body)})
    assert answer.status_code == 404
