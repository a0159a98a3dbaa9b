"""faxgate's HTTP server over real HTTP: callbacks (token, size, validation, duplicates),
inbound refusal, health and metrics, and the sandbox posting its own callbacks to it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate import metrics
from faxgate.domain.jobs import JobState, RetryPolicy
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.models import Upload
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.sending.tracker import Tracker
from faxgate.store import Store
from faxgate.web.callbacks import InboundHandler
from faxgate.web.server import HttpServer, build_app, start_http
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    pdf_document,
    wait_for,
)
from tests.mounts import Mounts, mounts
from tests.sending.test_tracker import submitted_job

__all__ = ["mounts"]  # the fixture

TOKEN = "t0k3n-for-the-callbacks_0123456789"
WRONG = "guessed-token-that-is-wrong-0123"
MAX_BODY = 8 * 1024
S = JobState


def transaction(guid: str, status: str, error: str | None = None) -> dict[str, Any]:
    now = str(int(datetime.now(UTC).timestamp()))
    return {
        "Guid": guid,
        "To": "14155550123",
        "From": "14155550100",
        "IsInbound": False,
        "IsDraft": False,
        "TypeCode": "F",
        "StatusCode": status,
        "ErrorCode": error,
        "CreatedAt": now,
        "UpdatedAt": now,
        "Uri": f"/v1/Accounts/{SANDBOX_GUID}/Transmissions/{guid}",
        "NumPagesBilled": 1 if status == "S" else 0,
    }


def callback_json(guid: str, status: str, error: str | None = None) -> str:
    return json.dumps({"Transaction": transaction(guid, status, error)})


def callbacks_counted(direction: str, result: str) -> float:
    labels = {"direction": direction, "result": result}
    return metrics.REGISTRY.get_sample_value("faxgate_callbacks_total", labels) or 0.0


@pytest.fixture
def tracker(store: Store) -> Tracker:
    return Tracker(store, RetryPolicy())


async def serve(tracker: Tracker, inbound: InboundHandler | None = None) -> HttpServer:
    app = build_app(token=TOKEN, tracker=tracker, max_body=MAX_BODY, inbound=inbound)
    return await start_http(app, "127.0.0.1", 0)


@pytest.fixture
async def server(tracker: Tracker) -> AsyncIterator[HttpServer]:
    running = await serve(tracker)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def http(server: HttpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
        yield client


def outbound(token: str = TOKEN) -> str:
    return f"/callbacks/{token}/outbound"


async def post_json_part(http: httpx.AsyncClient, body: str, token: str = TOKEN) -> httpx.Response:
    """As the provider posts: multipart/form-data with a part named json."""
    return await http.post(outbound(token), files={"json": (None, body, "text/plain")})


async def test_a_callback_settles_its_job(http: httpx.AsyncClient, store: Store) -> None:
    job = submitted_job(store, "g1")
    counted = callbacks_counted("outbound", "accepted")
    answer = await post_json_part(http, callback_json("g1", "S"))
    assert (answer.status_code, answer.text) == (200, "ok")
    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.SENT
    assert store.events(job.id)[-1].data["source"] == "callback"
    assert len(store.notifications(job.id)) == 1
    assert callbacks_counted("outbound", "accepted") == counted + 1


async def test_other_shapes_of_the_body_are_read_too(http: httpx.AsyncClient, store: Store) -> None:
    failed = submitted_job(store, "g1")
    sent = submitted_job(store, "g2")
    wrapped = json.dumps({"Transmission": transaction("g1", "E", "D")})
    assert (await post_json_part(http, wrapped)).status_code == 200
    form = await http.post(outbound(), data={"json": callback_json("g2", "S")})
    assert form.status_code == 200
    assert [j.state for j in map(store.get_job, (failed.id, sent.id)) if j] == [S.FAILED, S.SENT]


async def test_duplicate_and_late_callbacks_are_harmless(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, "g1")
    for status in ("S", "S", "T", "P", "S"):
        answer = await post_json_part(http, callback_json("g1", status))
        assert (answer.status_code, answer.text) == (200, "ok")
    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.SENT
    assert len(store.notifications(job.id)) == 1
    assert [e.to_state for e in store.events(job.id)].count(S.SENT) == 1


async def test_an_unknown_guid_is_acknowledged(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    counted = callbacks_counted("outbound", "unknown")
    with caplog.at_level(logging.INFO):
        answer = await post_json_part(http, callback_json("nobody", "S"))
    assert (answer.status_code, answer.text) == (200, "ok")
    assert "unknown transmission guid=nobody" in caplog.text
    assert callbacks_counted("outbound", "unknown") == counted + 1


async def test_a_wrong_token_gets_404_and_is_not_logged(
    http: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    job = submitted_job(store, "g1")
    counted = callbacks_counted("outbound", "bad_token")
    with caplog.at_level(logging.DEBUG):
        answer = await post_json_part(http, callback_json("g1", "S"), token=WRONG)
        inbound = await http.post(f"/callbacks/{WRONG}/inbound", files={"json": (None, "{}")})
        right = await post_json_part(http, callback_json("g1", "T"))
    assert answer.status_code == 404
    assert inbound.status_code == 404
    assert right.status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("wrong token" in r.getMessage() for r in warnings)
    # Neither the token presented nor the real one shows anywhere in the server's log
    # (the test's own HTTP client logs its URLs, token and all).
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "/callbacks/***/outbound" in server_log  # the access log, masked
    assert WRONG not in server_log
    assert TOKEN not in server_log
    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.TRANSMITTING
    assert callbacks_counted("outbound", "bad_token") == counted + 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"Transaction": {"Guid": "g1"}}), "StatusCode"),
        (json.dumps({"Transaction": {"To": "1", "StatusCode": "S"}}), "Guid"),
        (json.dumps({"Transaction": {"Guid": "g1", "To": "1", "StatusCode": "Z"}}), "StatusCode"),
    ],
)
async def test_an_invalid_transmission_gets_400(
    http: httpx.AsyncClient, store: Store, body: str, why: str
) -> None:
    job = submitted_job(store, "g1")
    answer = await post_json_part(http, body)
    assert answer.status_code == 400
    assert why in answer.text
    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.SUBMITTED


async def test_a_body_without_a_json_part_gets_400(http: httpx.AsyncClient) -> None:
    counted = callbacks_counted("outbound", "bad_request")
    other = await http.post(outbound(), files={"other": (None, "x")})
    assert (other.status_code, other.text) == (400, "no json part")
    plain = await http.post(outbound(), content=b"{}", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 400
    assert callbacks_counted("outbound", "bad_request") == counted + 2


def big_multipart(size: int) -> tuple[bytes, str]:
    boundary = "faxgate-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="json"\r\n\r\n'.encode()
        + callback_json("g1", "S").encode()
        + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.pdf"\r\nContent-Type: application/pdf\r\n\r\n'.encode()
        + b"x" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_an_oversize_body_gets_413_with_or_without_a_length(
    http: httpx.AsyncClient, store: Store
) -> None:
    job = submitted_job(store, "g1")
    counted = callbacks_counted("outbound", "too_large")
    body, content_type = big_multipart(MAX_BODY * 2)

    announced = await http.post(outbound(), content=body, headers={"Content-Type": content_type})
    assert announced.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    streamed = await http.post(outbound(), content=chunks(), headers={"Content-Type": content_type})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413

    form = await http.post(outbound(), data={"json": "x" * (MAX_BODY + 1)})
    assert form.status_code == 413

    current = store.get_job(job.id)
    assert current is not None
    assert current.state is S.SUBMITTED
    assert callbacks_counted("outbound", "too_large") == counted + 3

    # Within the limit, the same shape is fine (the file part is ignored on outbound).
    body, content_type = big_multipart(MAX_BODY // 2)
    fits = await http.post(outbound(), content=body, headers={"Content-Type": content_type})
    assert fits.status_code == 200


async def test_a_store_failure_gets_503_so_the_provider_retries(
    http: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    submitted_job(store, "g1")
    store.close()  # as good as a failed disk
    with caplog.at_level(logging.ERROR, logger="faxgate.web"):
        answer = await post_json_part(http, callback_json("g1", "S"))
    assert answer.status_code == 503
    assert "not recorded guid=g1" in caplog.text


async def test_inbound_faxes_are_refused_for_now(http: httpx.AsyncClient) -> None:
    counted = callbacks_counted("inbound", "not_accepted")
    answer = await http.post(
        f"/callbacks/{TOKEN}/inbound",
        files={"json": (None, callback_json("in1", "S")), "file": ("fax.pdf", b"%PDF-1.4")},
    )
    assert (answer.status_code, answer.text) == (503, "inbound faxes are not accepted yet")
    assert callbacks_counted("inbound", "not_accepted") == counted + 1


async def test_an_inbound_handler_gets_the_transaction_and_the_files(tracker: Tracker) -> None:
    taken: list[tuple[dict[str, Any], list[tuple[str, bytes]]]] = []
    left: list[Path] = []

    async def handler(transaction: dict[str, Any], files: list[tuple[str, Path]]) -> None:
        taken.append((transaction, [(name, path.read_bytes()) for name, path in files]))
        left.extend(path for _, path in files)
        if transaction["Guid"] == "broken":
            raise OSError("disk full")

    server = await serve(tracker, inbound=handler)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            document = pdf_document(1)
            ok = await http.post(
                f"/callbacks/{TOKEN}/inbound",
                files={"json": (None, callback_json("in1", "S")), "file": ("fax.pdf", document)},
            )
            broken = await http.post(
                f"/callbacks/{TOKEN}/inbound",
                files={"json": (None, callback_json("broken", "S")), "file": ("b.pdf", b"x")},
            )
    finally:
        await server.stop()
    assert ok.status_code == 200
    assert broken.status_code == 503
    transaction, files = taken[0]
    assert transaction["Guid"] == "in1"
    assert files == [("fax.pdf", document)]
    assert left
    assert not any(path.exists() for path in left)  # temporary: gone after the call


async def test_an_inbound_fax_that_cannot_be_saved_gets_503_so_the_provider_retries(
    tracker: Tracker, tmp_path: Path, mounts: Mounts
) -> None:
    uploads = mounts.tmpfs(tmp_path / "uploads", "64k")
    taken: list[str] = []

    async def handler(transaction: dict[str, Any], files: list[tuple[str, Path]]) -> None:
        taken.append(transaction["Guid"])

    app = build_app(
        token=TOKEN, tracker=tracker, max_body=2**20, inbound=handler, upload_dir=uploads
    )
    server = await start_http(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            big = await http.post(  # more than the disk holds
                f"/callbacks/{TOKEN}/inbound",
                files={"json": (None, callback_json("in2", "S")), "file": ("f.pdf", b"x" * 2**17)},
            )
            small = await http.post(
                f"/callbacks/{TOKEN}/inbound",
                files={"json": (None, callback_json("in3", "S")), "file": ("f.pdf", b"%PDF-1.4")},
            )
    finally:
        await server.stop()
    assert big.status_code == 503
    assert small.status_code == 200
    assert taken == ["in3"]
    assert list(uploads.iterdir()) == []  # nothing half saved is left


async def test_health_and_metrics(http: httpx.AsyncClient) -> None:
    health = await http.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    await http.post(outbound(WRONG), files={"json": (None, "{}")})
    scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert 'faxgate_callbacks_total{direction="outbound",result="bad_token"}' in scraped.text


async def test_the_sandbox_callback_settles_the_job_without_polling(
    sandbox: Sandbox, server: HttpServer, store: Store
) -> None:
    async with HelloFaxClient(
        sandbox.base_url, SANDBOX_GUID, SANDBOX_USERNAME, SANDBOX_PASSWORD
    ) as client:
        url = f"http://127.0.0.1:{server.port}/callbacks/{TOKEN}/outbound"
        account = await client.update_account(outbound_url=url)
        assert account.default_outbound_fax_callback_url == url
        # Held at P until the job is in the store, as the dispatcher would have it; then
        # every callback is posted twice.
        sandbox.faults = FaultSettings(stall_faxes=True)
        (sent,) = await client.send("14155550123", [Upload("a.pdf", pdf_document(1))])
        (busy,) = await client.send("14155550001", [Upload("b.pdf", pdf_document(1))])
        jobs = [submitted_job(store, sent.guid), submitted_job(store, busy.guid)]
        sandbox.faults = FaultSettings(callback_copies=2)
        requests_before = sum(client.request_counts.values())

        def settled() -> bool:
            current = [store.get_job(job.id) for job in jobs]
            return [j.state if j else None for j in current] == [S.SENT, S.QUEUED]

        await wait_for(settled, what="the callbacks to settle both jobs")
        assert sum(client.request_counts.values()) == requests_before  # no polling

    def posted() -> list[int | None]:
        attempts = sandbox.callback_attempts()
        return [a.status for a in attempts if a.transmission_guid == sent.guid]

    await wait_for(lambda: len(posted()) == 2, what="the copy of the callback")
    assert posted() == [200, 200]
    assert len(store.notifications(jobs[0].id)) == 1
    assert store.notifications(jobs[1].id) == []  # busy: called again later, no report yet
