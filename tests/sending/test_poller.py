"""The poller against the sandbox over real HTTP and a real store: both read modes, backoff,
provider faults, and the scheduler that drives it."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from faxgate import metrics
from faxgate.domain.jobs import Intake, Job, JobState, RetryPolicy
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.models import Upload
from faxgate.hellofax.provider import HelloFaxProvider
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.sending.poller import Poller, PollReport
from faxgate.sending.tracker import Tracker
from faxgate.settings import PollingSettings
from faxgate.store import NewJob, Store
from tests.conftest import (
    SANDBOX_GUID,
    SANDBOX_PASSWORD,
    SANDBOX_USERNAME,
    pdf_document,
    sandbox_client,
    wait_for,
)
from tests.sending.test_tracker import submitted_job
from tests.store.making import FakeClock

S = JobState
FIRST = timedelta(seconds=30)
MAX = timedelta(seconds=100)
FINAL = frozenset("SEH")


def polling(**overrides: object) -> PollingSettings:
    values: dict[str, object] = {
        "tick": timedelta(hours=1),  # tests drive cycles themselves, or wake the poller
        "first_interval": FIRST,
        "max_interval": MAX,
        "list_threshold": 3,
        "page_size": 5,
    }
    values.update(overrides)
    return PollingSettings.model_validate(values)


# The tests of which pages the list mode reads need faxes that stay listed once sent.
KEEPING = pytest.mark.parametrize("removal", ["nothing"])


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: the list mode compares our times with the provider's.
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3", clock=clock) as opened:
        yield opened


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[HelloFaxClient]:
    async with sandbox_client(sandbox, timeout=10.0) as opened:
        yield opened


@pytest.fixture
def tracker(store: Store, clock: FakeClock) -> Tracker:
    return Tracker(store, RetryPolicy(), clock=clock)


def make_poller(
    store: Store,
    client: HelloFaxClient,
    tracker: Tracker,
    clock: FakeClock,
    *,
    removes: bool = True,
    **settings: object,
) -> Poller:
    return Poller(
        store,
        HelloFaxProvider(client),
        tracker,
        polling(**settings),
        clock=clock,
        provider_removes=removes,
    )


async def send_faxes(client: HelloFaxClient, count: int, first: int) -> list[str]:
    """Faxes to numbers that end in success, all in one request; their GUIDs."""
    numbers = [f"1415555{first + n:04d}" for n in range(count)]
    sent = await client.send(numbers, [Upload("a.pdf", pdf_document(1), "application/pdf")])
    return [tx.guid for tx in sent]


async def until_final(sandbox: Sandbox, guids: list[str]) -> None:
    wanted = set(guids)

    def final() -> bool:
        done = {t.guid for t in sandbox.inspect() if t.guid in wanted and t.status in FINAL}
        return done == wanted

    await wait_for(final, what="the sandbox to finish the faxes")


def jobs_for(store: Store, clock: FakeClock, guids: list[str]) -> list[Job]:
    """Jobs as the dispatcher leaves them, submitted; due a poll once FIRST has passed."""
    return [submitted_job(store, guid, now=clock.now, first_interval=FIRST) for guid in guids]


def states(store: Store, jobs: list[Job]) -> list[JobState]:
    current = [store.get_job(job.id) for job in jobs]
    return [job.state for job in current if job is not None]


async def cycle(poller: Poller, client: HelloFaxClient) -> tuple[PollReport, Counter[str]]:
    """One poll cycle, and the requests it made by endpoint."""
    before = Counter(client.request_counts)
    report = await poller.poll_once()
    made: Counter[str] = Counter()
    for (endpoint, _), n in (Counter(client.request_counts) - before).items():
        made[endpoint] += n
    return report, made


def polls_counted(mode: str) -> float:
    return metrics.REGISTRY.get_sample_value("faxgate_polls_total", {"mode": mode}) or 0.0


async def test_one_by_one_reads_each_due_job_once(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock)
    guids = await send_faxes(client, 3, 2000)
    jobs = jobs_for(store, clock, guids)
    await until_final(sandbox, guids)

    report, made = await cycle(poller, client)
    assert report == PollReport(due=0, requests=0, mode=None, settled=0)  # not due yet
    assert made == Counter()

    clock.now += FIRST
    counted = polls_counted("one_by_one")
    report, made = await cycle(poller, client)
    # Each is asked for once: gone (404), as the provider removes a fax once it is sent;
    # one look at the list shows the account answering, so the 404s are believed.
    assert report == PollReport(due=3, requests=4, mode="one_by_one", settled=3)
    assert made == Counter({"get_transmission": 3, "list_transmissions": 1})
    assert states(store, jobs) == [S.PRESUMED_SENT] * 3
    assert polls_counted("one_by_one") == counted + 1
    for job in jobs:
        assert len(store.notifications(job.id)) == 1

    report, made = await cycle(poller, client)
    assert report.due == 0  # settled jobs are never polled again
    assert made == Counter()


@KEEPING
async def test_list_mode_reads_only_the_pages_the_due_jobs_are_on(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock, list_threshold=3, page_size=5)
    history = await send_faxes(client, 12, 3000)  # older faxes, no job of ours pending
    await until_final(sandbox, history)
    guids = await send_faxes(client, 7, 4000)
    jobs = jobs_for(store, clock, guids)
    await until_final(sandbox, guids)

    clock.now += FIRST
    counted = polls_counted("list")
    report, made = await cycle(poller, client)
    assert report == PollReport(due=7, requests=2, mode="list", settled=7)
    # 19 transmissions make 4 pages; the 7 due ones are the newest, on the first 2.
    assert made == Counter({"list_transmissions": math.ceil(7 / 5)})
    assert states(store, jobs) == [S.SENT] * 7
    assert polls_counted("list") == counted + 1


@KEEPING
async def test_list_mode_stops_at_pages_older_than_the_due_jobs(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    history = await send_faxes(client, 12, 3000)
    guids = await send_faxes(client, 3, 4000)
    await until_final(sandbox, history + guids)
    # Our jobs were submitted (by our clock) an hour after everything the provider lists,
    # so past the first page there is nothing a due job could be; one GUID it never had.
    clock.now += timedelta(hours=1)
    poller = make_poller(
        store, client, tracker, clock, removes=False, list_threshold=3, page_size=5
    )
    jobs = jobs_for(store, clock, [*guids, "0" * 40])
    clock.now += FIRST

    report, made = await cycle(poller, client)
    assert report.mode == "list"
    assert report.settled == 3
    # One page, then the one the list did not show, asked for on its own (404).
    assert made == Counter({"list_transmissions": 1, "get_transmission": 1})
    assert states(store, jobs) == [S.SENT, S.SENT, S.SENT, S.SUBMITTED]


@KEEPING
async def test_list_mode_reads_no_more_pages_than_our_faxes_at_the_provider_fill(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock, list_threshold=3, page_size=5)
    old = await send_faxes(client, 1, 5000)  # still ours to poll: sent before the others
    others = await send_faxes(client, 12, 5100)  # settled long ago, or another program's
    newest = await send_faxes(client, 3, 5200)
    jobs = jobs_for(store, clock, old + newest)
    await until_final(sandbox, old + others + newest)
    clock.now += FIRST

    report, made = await cycle(poller, client)
    assert report == PollReport(due=4, requests=2, mode="list", settled=4)
    # 4 of ours out fit on one page of 5: one page read, the old one asked for on its own
    # instead of reading 3 more pages to reach it.
    assert made == Counter({"list_transmissions": 1, "get_transmission": 1})
    assert states(store, jobs) == [S.SENT] * 4


async def test_pending_jobs_are_polled_less_and_less_often(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock)
    sandbox.faults = FaultSettings(stall_faxes=True)  # they stay pending
    guids = await send_faxes(client, 2, 5000)
    jobs = jobs_for(store, clock, guids)
    start = clock.now

    waits = []
    for _ in range(4):
        due_at = store.get_job(jobs[0].id)
        assert due_at is not None
        assert due_at.next_poll_at is not None
        clock.now = due_at.next_poll_at
        report, _ = await cycle(poller, client)
        assert (report.due, report.requests, report.settled) == (2, 2, 0)
        after = store.get_job(jobs[0].id)
        assert after is not None
        assert after.next_poll_at is not None
        assert after.poll_interval is not None
        assert after.next_poll_at - clock.now == after.poll_interval
        waits.append(after.poll_interval)
        # Not due again before its time.
        clock.now += after.poll_interval - timedelta(seconds=1)
        report, made = await cycle(poller, client)
        assert report.due == 0
        assert made == Counter()
    assert waits == [2 * FIRST, MAX, MAX, MAX]  # doubled, capped at max_interval
    assert clock.now > start
    assert states(store, jobs) == [S.SUBMITTED] * 2

    sandbox.faults = FaultSettings()
    await until_final(sandbox, guids)
    clock.now += MAX
    report, _ = await cycle(poller, client)
    assert report.settled == 2


async def test_a_fax_the_provider_no_longer_shows_ends_presumed_sent_not_failed(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock)
    (job,) = jobs_for(store, clock, ["f" * 40])  # a GUID it gave us, and shows no more
    clock.now += FIRST
    report, made = await cycle(poller, client)
    assert (report.due, report.requests, report.settled, report.completed) == (1, 2, 1, True)
    assert made == Counter({"get_transmission": 1, "list_transmissions": 1})
    after = store.get_job(job.id)
    assert after is not None
    assert after.state is S.PRESUMED_SENT
    assert after.reason is not None
    assert "removed the fax" in after.reason
    [report_row] = store.notifications(job.id)
    assert report_row.payload["state"] == "presumed_sent"


async def test_a_404_from_an_account_that_does_not_answer_presumes_nothing(
    sandbox: Sandbox, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    # The wrong account: every call answers 404, the list too. Nothing is presumed sent.
    async with HelloFaxClient(
        sandbox.base_url, "e" * 40, SANDBOX_USERNAME, SANDBOX_PASSWORD, timeout=10.0
    ) as wrong:
        poller = make_poller(store, wrong, tracker, clock)
        (job,) = jobs_for(store, clock, ["f" * 40])
        clock.now += FIRST
        report, made = await cycle(poller, wrong)
    assert (report.settled, report.completed) == (0, False)
    assert made == Counter({"get_transmission": 1, "list_transmissions": 1})
    after = store.get_job(job.id)
    assert after is not None
    assert after.state is S.SUBMITTED
    assert store.notifications(job.id) == []


async def test_list_mode_asks_for_the_faxes_the_list_no_longer_shows(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock, list_threshold=3, page_size=5)
    guids = await send_faxes(client, 7, 4500)
    jobs = jobs_for(store, clock, guids)
    await until_final(sandbox, guids)
    assert all(t.removed for t in sandbox.inspect() if t.guid in guids)
    clock.now += FIRST
    report, made = await cycle(poller, client)
    # More gone than list_threshold: each is still asked for, and ends.
    assert report == PollReport(due=7, requests=8, mode="list", settled=7)
    assert made == Counter({"list_transmissions": 1, "get_transmission": 7})
    assert states(store, jobs) == [S.PRESUMED_SENT] * 7


@pytest.mark.parametrize(("count", "mode"), [(2, "one_by_one"), (5, "list")])
async def test_a_provider_fault_ends_the_cycle_and_the_next_one_settles(
    sandbox: Sandbox,
    client: HelloFaxClient,
    store: Store,
    tracker: Tracker,
    clock: FakeClock,
    count: int,
    mode: str,
) -> None:
    poller = make_poller(store, client, tracker, clock, list_threshold=3)
    guids = await send_faxes(client, count, 6000)
    jobs = jobs_for(store, clock, guids)
    await until_final(sandbox, guids)
    due_at = clock.now + FIRST
    clock.now = due_at

    sandbox.faults = FaultSettings(error_rate=1.0)
    report, _ = await cycle(poller, client)
    assert (report.due, report.mode, report.requests) == (count, mode, 1)
    assert not report.completed
    assert states(store, jobs) == [S.SUBMITTED] * count
    for job in jobs:  # still due: tried again at the next tick, not pushed back
        current = store.get_job(job.id)
        assert current is not None
        assert current.next_poll_at == due_at

    sandbox.faults = FaultSettings()
    report, _ = await cycle(poller, client)
    assert report.completed
    assert report.settled == count
    assert states(store, jobs) == [S.PRESUMED_SENT] * count  # sent, and removed


async def test_jobs_being_reconciled_are_left_to_the_dispatcher(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock)
    guids = await send_faxes(client, 2, 7000)
    submitting, uncertain = store.create_jobs(
        [NewJob(to_number="+14155557000", intake=Intake.CLI)] * 2, now=clock.now
    )
    for job, guid in ((submitting, guids[0]), (uncertain, guids[1])):
        store.transition(
            job.id, S.SUBMITTING, detail="submitting", provider_guid=guid, next_poll_at=clock.now
        )
    store.transition(uncertain.id, S.UNCERTAIN, detail="could not tell")
    await until_final(sandbox, guids)
    clock.now += FIRST
    report, made = await cycle(poller, client)
    assert report.due == 0
    assert made == Counter()
    assert states(store, [submitting, uncertain]) == [S.SUBMITTING, S.UNCERTAIN]


async def test_run_polls_at_once_and_when_woken_until_cancelled(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    poller = make_poller(store, client, tracker, clock)  # the tick is an hour
    poller.wake()  # before run: nothing to wake, and no harm
    first = await send_faxes(client, 1, 8000)
    jobs = jobs_for(store, clock, first)
    clock.now += FIRST
    await until_final(sandbox, first)

    running = asyncio.create_task(poller.run())
    try:
        await wait_for(lambda: states(store, jobs) == [S.PRESUMED_SENT], what="the first tick")
        second = await send_faxes(client, 1, 8100)
        more = jobs_for(store, clock, second)
        clock.now += FIRST
        await until_final(sandbox, second)
        poller.wake()
        await wait_for(lambda: states(store, more) == [S.PRESUMED_SENT], what="a woken cycle")
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert running.cancelled()


class SignallingTransport(httpx.AsyncHTTPTransport):
    """Tells when a request has started on its way."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.started.set()
        return await super().handle_async_request(request)


async def test_cancelling_run_mid_cycle_leaves_the_job_as_it_was(
    sandbox: Sandbox, store: Store, tracker: Tracker, clock: FakeClock
) -> None:
    transport = SignallingTransport()
    async with HelloFaxClient(
        sandbox.base_url, SANDBOX_GUID, SANDBOX_USERNAME, SANDBOX_PASSWORD, transport=transport
    ) as client:
        (guid,) = await send_faxes(client, 1, 9000)
        (job,) = jobs_for(store, clock, [guid])
        clock.now += FIRST
        sandbox.faults = FaultSettings(delay=0.5)  # the poll's answer is held back
        transport.started.clear()
        poller = make_poller(store, client, tracker, clock)
        running = asyncio.create_task(poller.run())
        await asyncio.wait_for(transport.started.wait(), 5)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert client.request_counts == Counter({("send", 200): 1})  # the poll never ended
    current = store.get_job(job.id)
    assert current is not None
    assert current == job  # untouched: still submitted, still due
