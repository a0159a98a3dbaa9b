"""Bad callbacks against a whole daemon: each gets its HTTP status (400, 405, 413), nothing
is recorded, the daemon answers meanwhile, and the fax in flight is settled as usual.

tests/web/test_server.py already proves: invalid JSON, a non-object, missing Guid or StatusCode,
an unknown status, an unknown GUID (200), a wrong token (404, never logged), bodies over
the limit with and without a length on a small limit. Here: wrong types, bodies that broke
the reader (JSON nested 100,000 deep, a malformed multipart: both answered 500 before),
other methods, and a 100 MB body streamed at the real default limit, which must be refused
without being held in memory (it was held up to the limit, 50 MB a request, before).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate import metrics
from faxgate.app import Daemon, started
from faxgate.domain.jobs import Job, JobState
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from tests.conftest import wait_for
from tests.daemon import CALLBACK_TOKEN, fast_settings, queue, settled

MB = 1024 * 1024
OUTBOUND = f"/callbacks/{CALLBACK_TOKEN}/outbound"
INBOUND = f"/callbacks/{CALLBACK_TOKEN}/inbound"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(fast_settings(tmp_path / "state")) as running:
        yield running


def sandbox_of(daemon: Daemon) -> Sandbox:
    assert isinstance(daemon.sandbox, Sandbox)
    return daemon.sandbox


async def held_job(daemon: Daemon) -> Job:
    """A fax submitted to the sandbox and held there at P until released."""
    sandbox_of(daemon).faults = FaultSettings(stall_faxes=True)
    job = await queue(daemon, "+14155550123")

    def submitted() -> Job | None:
        current = daemon.store.get_job(job.id)
        return current if current and current.provider_guid else None

    held: Job = await wait_for(submitted, what="the fax submitted")
    return held


def base_url(daemon: Daemon) -> str:
    return f"http://127.0.0.1:{daemon.http.port}"


def transaction(guid: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "Guid": guid,
        "To": "14155550123",
        "From": "14155550100",
        "IsInbound": False,
        "StatusCode": "S",
        "ErrorCode": None,
        "CreatedAt": "1717405200",
        "UpdatedAt": "1717405260",
        "NumPagesBilled": 1,
    }
    values.update(changes)
    return values


def wrapped(guid: str, **changes: Any) -> str:
    return json.dumps({"Transaction": transaction(guid, **changes)})


@dataclass(frozen=True)
class BadBody:
    id: str
    content: bytes
    content_type: str
    words: str


def json_part(text: str | bytes, boundary: str = "cb") -> tuple[bytes, str]:
    data = text.encode() if isinstance(text, str) else text
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="json"\r\n\r\n'.encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def bad_bodies(guid: str) -> list[BadBody]:
    typed = {
        "guid-a-list": (wrapped(guid, Guid=[guid]), "invalid Guid"),
        "status-a-number": (wrapped(guid, StatusCode=5), "invalid StatusCode"),
        "status-null": (wrapped(guid, StatusCode=None), "invalid StatusCode"),
        "pages-a-word": (wrapped(guid, NumPagesBilled="many"), "invalid NumPagesBilled"),
        "pages-nan": (wrapped(guid, NumPagesBilled=float("nan")), "invalid NumPagesBilled"),
        "time-a-word": (wrapped(guid, UpdatedAt="yesterday"), "invalid UpdatedAt"),
        "to-an-object": (wrapped(guid, To={"n": 1}), "invalid To"),
        "inbound-maybe": (wrapped(guid, IsInbound="maybe"), "invalid IsInbound"),
        "transaction-a-string": (json.dumps({"Transaction": guid}), "Guid, StatusCode, To"),
        "transaction-null": (json.dumps({"Transaction": None}), "Guid, StatusCode, To"),
        "nested-100000-deep": ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
        "objects-100000-deep": ('{"a":' * 100_000 + "1" + "}" * 100_000, "not valid JSON"),
        "integer-5000-digits": ('{"Transaction": {"NumPagesBilled": ' + "9" * 5000 + "}}",
                                "not valid JSON"),
    }  # fmt: skip
    cases = [BadBody(key, *json_part(text), words) for key, (text, words) in typed.items()]
    not_utf8, multipart = json_part(b'{"Transaction": {"Guid": "\xff\xfe"}}')
    cases.append(BadBody("json-not-utf8", not_utf8, multipart, "part 'json' is not UTF-8"))
    broken = b"--cb\r\nthis is no header\r\n\r\n{}\r\n--cb--\r\n"
    cases.append(BadBody("part-header-broken", broken, multipart, "multipart body is malformed"))
    cases.append(BadBody("no-boundary", b"--cb\r\n", "multipart/form-data", "malformed"))
    many = b"".join(
        f'--cb\r\nContent-Disposition: form-data; name="f{n}"\r\n\r\nx\r\n'.encode()
        for n in range(40)
    )
    cases.append(BadBody("40-parts", many + b"--cb--\r\n", multipart, "more than 32 parts"))
    cases.append(
        BadBody("bare-json", wrapped(guid).encode(), "application/json", "expected multipart")
    )
    form = b"json=%7B%22Transaction%22%3A%20%7B%22Guid%22%3A%20%22%ff%22%7D%7D"
    cases.append(
        BadBody("form-odd-bytes", form, "application/x-www-form-urlencoded", "invalid StatusCode")
    )
    return cases


def counted(result: str) -> float:
    labels = {"direction": "outbound", "result": result}
    return metrics.REGISTRY.get_sample_value("faxgate_callbacks_total", labels) or 0.0


async def test_bad_bodies_get_400_and_change_nothing(daemon: Daemon) -> None:
    job = await held_job(daemon)
    assert job.provider_guid is not None
    events = len(daemon.store.events(job.id))
    cases = bad_bodies(job.provider_guid)
    before = counted("bad_request")
    async with httpx.AsyncClient(base_url=base_url(daemon), timeout=30) as http:
        for case in cases:
            answer = await http.post(
                OUTBOUND, content=case.content, headers={"Content-Type": case.content_type}
            )
            assert answer.status_code == 400, (case.id, answer.status_code, answer.text)
            assert case.words in answer.text, (case.id, answer.text)
        assert (await http.get("/healthz")).status_code == 200
    assert counted("bad_request") == before + len(cases)
    now = daemon.store.get_job(job.id)
    assert now is not None
    assert now.state is JobState.SUBMITTED
    assert len(daemon.store.events(job.id)) == events
    # Released, the fax in flight ends as it would have.
    sandbox_of(daemon).faults = FaultSettings()
    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
@pytest.mark.parametrize("path", [OUTBOUND, INBOUND, "/callbacks/not-the-token/outbound"])
async def test_other_methods_get_405(daemon: Daemon, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=base_url(daemon), timeout=10) as http:
        answer = await http.request(method, path, content=b"{}")
        assert answer.status_code == 405
        assert answer.headers["Allow"] == "POST"
        assert (await http.get(f"/callbacks/{CALLBACK_TOKEN}/elsewhere")).status_code == 404


# ---------------------------------------------------------------------------- 100 MB


def rss_bytes() -> int:
    """This process's resident memory: the daemon runs in it."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Upload:
    status: int
    sent: int  # body bytes sent when the answer came
    peak_growth: int  # the most the process's memory grew meanwhile
    health_meanwhile: int


async def stream(
    daemon: Daemon, first_part: bytes, *, total: int, announce: bool = False
) -> Upload:
    """POST a multipart body of `total` bytes in 64 KB pieces (chunked, or announced with
    Content-Length and then sent), stopping once the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.http.port)
    framing = f"Content-Length: {total}" if announce else "Transfer-Encoding: chunked"
    writer.write(
        f"POST {OUTBOUND} HTTP/1.1\r\nHost: faxgate\r\n"
        f"Content-Type: multipart/form-data; boundary=cb\r\n{framing}\r\n\r\n".encode()
    )

    def framed(piece: bytes) -> bytes:
        return piece if announce else b"%x\r\n%s\r\n" % (len(piece), piece)

    baseline, peak = rss_bytes(), 0
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n"))
    health = 0
    piece = b"x" * (64 * 1024)
    sent = 0
    try:
        if not announce:
            writer.write(framed(first_part))
            sent += len(first_part)
        while sent < total and not answer.done():
            writer.write(framed(piece))
            sent += len(piece)
            drained = asyncio.ensure_future(writer.drain())
            await asyncio.wait({drained, answer}, return_when=asyncio.FIRST_COMPLETED)
            if not drained.done():
                drained.cancel()
                break
            peak = max(peak, rss_bytes() - baseline)
            if not health and sent >= 512 * 1024:
                async with httpx.AsyncClient(timeout=10) as http:
                    health = (await http.get(f"{base_url(daemon)}/healthz")).status_code
    except ConnectionError:
        pass  # the server answered and closed while we were still sending
    status_line = await asyncio.wait_for(answer, 20)
    writer.close()
    return Upload(int(status_line.split()[1]), sent, peak, health)


def file_part() -> bytes:
    return (
        b'--cb\r\nContent-Disposition: form-data; name="file"; filename="big.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    )


def field_part() -> bytes:
    return b'--cb\r\nContent-Disposition: form-data; name="json"\r\n\r\n{"Transaction": "'


async def test_a_100_mb_body_is_refused_by_size_without_being_held(daemon: Daemon) -> None:
    job = await held_job(daemon)
    limit = daemon.settings.http.max_callback_size
    assert limit == 50 * MB  # the default: the body is twice that
    before = counted("too_large")

    as_file = await stream(daemon, file_part(), total=100 * MB)
    assert as_file.status == 413
    assert limit < as_file.sent < limit + 8 * MB  # read up to the limit, no further
    assert as_file.health_meanwhile == 200
    assert as_file.peak_growth < 24 * MB, as_file  # not held: it was 50 MB

    as_field = await stream(daemon, field_part(), total=100 * MB)
    assert as_field.status == 413
    assert as_field.sent < 8 * MB  # a field is never more than 1 MiB
    assert as_field.peak_growth < 24 * MB, as_field

    announced = await stream(daemon, b"", total=100 * MB, announce=True)
    assert announced.status == 413
    assert announced.sent < 8 * MB  # answered on the announcement
    assert counted("too_large") == before + 3

    # The fax in flight is untouched and ends as usual.
    current = daemon.store.get_job(job.id)
    assert current is not None
    assert current.state is JobState.SUBMITTED
    sandbox_of(daemon).faults = FaultSettings()
    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT
