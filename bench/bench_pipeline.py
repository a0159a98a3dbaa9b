"""API requests per completed fax: 1,000 faxes through a whole daemon, with and without
callbacks, on HelloFax v1 and on the Dropbox Fax API v3 in the same run.

Run from the repository: `.venv/bin/python bench/bench_pipeline.py [--faxes N] [--scale S]`.

A daemon runs in-process (faxgate.app.started) with its built-in sandbox on loopback and
sends one-page faxes, queued as an intake queues them (queue_fax). Each run has a fresh
state directory:
1. callbacks: N faxes at once; the daemon registers its callback URLs with the sandbox, as
   it does on start;
2. polling only: N faxes at once; the account's callback URLs cleared right after start;
3. polling, 1 in 50 slow: as 2, but every 50th fax goes to a number the sandbox takes five
   times as long to send to: it stays pending while newer faxes settle;
4. callbacks, a trickle: 100 faxes, one every 4 (scaled) seconds, so only a few are at the
   provider at once and the poller reads them one by one;
5. v3, callbacks: as 1, on the sandbox's v3 face (`[sandbox] api = "dropbox_fax"`): the
   signed events settle the faxes;
6. v3, polling only: as 2, on v3: its events URL cleared right after start.
Requests are counted on the client's side (the client's request_counts, every call by
endpoint) from just before the first fax is queued until the last one is settled. On v3
the client keeps to the provider's rate limit (100 requests a window), the window scaled
like every other timing (60 s x scale).

Every provider timing (conversion, transmission, callback retries) and every poll timing
(tick, first and longest interval, callback grace, at their defaults) is multiplied by
the same `scale`: whether a fax is polled before its callback comes depends on how those
times compare, so they keep their real proportions while a run takes seconds instead of
hours. The daemon's own work is not scaled: at 0.05 it is twenty times slower relative to
the provider than it would be for real, so poll cycles may outlast a tick ("ticks
skipped").

The baseline printed beside the measured figures is the ideal: one send per fax, and for
polling, one list page per `page_size` faxes. Each poll cycle is recorded (Poller.poll_once
wrapped): the pages of the transmission list it read, next to ceil(out / page size), out
being the jobs at the provider when it began (submitting, submitted or transmitting).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from _common import banner, bench_settings, fax_number, one_page_pdf, rss_kib, table

from faxgate.app import Daemon, started
from faxgate.domain.jobs import ACTIVE_STATES, FINISHED_STATES, Intake, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.sending.dispatcher import DispatchReport
from faxgate.sending.poller import PollReport
from faxgate.settings import PollingSettings, Settings
from faxgate.store import Store
from faxgate.store.spool import Spool


@dataclass(frozen=True, slots=True)
class RunSpec:
    name: str
    callbacks: bool
    slow_every: int = 0  # every n-th fax transmits five times as long (0: none)
    faxes: int | None = None  # None: --faxes
    every: float = 0.0  # realistic seconds between two faxes (0: all at once)
    api: str = "hellofax"  # the sandbox's face: "hellofax" (v1) or "dropbox_fax" (v3)


RUNS = (
    RunSpec("callbacks", callbacks=True),
    RunSpec("polling only", callbacks=False),
    # A few long faxes stay pending while newer ones settle: the list read reaches back
    # past settled transmissions to find them.
    RunSpec("polling, 1 in 50 slow", callbacks=False, slow_every=50),
    RunSpec("callbacks, a trickle", callbacks=True, faxes=100, every=4.0),
    RunSpec("v3, callbacks", callbacks=True, api="dropbox_fax"),
    RunSpec("v3, polling only", callbacks=False, api="dropbox_fax"),
)
GOAL_WITH_CALLBACKS = 1.05  # requests per completed fax
QUEUE_BATCH = 25  # faxes queued between two wake-ups of the dispatcher
SETTLED_STATES = FINISHED_STATES | {JobState.UNCERTAIN}
# Each API's names for the three calls that count (v1's, then v3's).
SEND, GET, LIST = "send", "get", "list"
KINDS = {
    "send": SEND,
    "get_transmission": GET,
    "list_transmissions": LIST,
    "get_fax": GET,
    "list_faxes": LIST,
}
STOP_DEADLINE = 120.0  # seconds for the daemon to stop after the last fax settled

RequestCounts = Counter[tuple[str, int | str]]


@dataclass(frozen=True, slots=True)
class PollCycle:
    in_flight: int  # jobs at the provider when the cycle began
    due: int
    pages: int  # transmission list pages read
    lookups: int  # transmissions read one by one
    seconds: float


@dataclass(slots=True)
class RunResult:
    spec: RunSpec
    faxes: int
    page_size: int
    wall: float = 0.0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "endpoint status" of non-2xx
    outcomes: Counter[str] = field(default_factory=Counter)
    cycles: list[PollCycle] = field(default_factory=list)
    callbacks: int = 0  # callback POSTs the sandbox made
    duplicates: int = 0  # documents the sandbox got twice for one number
    rss_mib: float = 0.0  # after the run
    skipped_ticks: int = 0  # poll ticks skipped: the previous cycle still ran
    dispatch_cycles: int = 0
    dispatch_seconds: float = 0.0  # spent in dispatch cycles

    @property
    def requests(self) -> int:
        return sum(self.by_endpoint.values())

    def per_fax(self, count: float) -> str:
        return f"{count / self.faxes:.3f}"


class PollRecorder:
    """Stands in for the poller's poll_once: records each cycle, then runs the real one."""

    def __init__(self, daemon: Daemon, original: Callable[[], Awaitable[PollReport]]) -> None:
        self._store = daemon.store
        self._counts = request_counts(daemon)
        self._original = original
        self.cycles: list[PollCycle] = []

    async def poll_once(self) -> PollReport:
        by_state = await asyncio.to_thread(self._store.count_by_state)
        in_flight = sum(by_state[state] for state in ACTIVE_STATES)
        before = _by_endpoint(self._counts)
        began = time.perf_counter()
        report = await self._original()
        seconds = time.perf_counter() - began
        after = _by_endpoint(self._counts)
        if report.due:
            self.cycles.append(
                PollCycle(
                    in_flight=in_flight,
                    due=report.due,
                    pages=after[LIST] - before[LIST],
                    lookups=after[GET] - before[GET],
                    seconds=seconds,
                )
            )
        return report


class DispatchRecorder:
    """Stands in for the dispatcher's dispatch_once: counts and times the cycles."""

    def __init__(self, original: Callable[[], Awaitable[DispatchReport]]) -> None:
        self._original = original
        self.cycles = 0
        self.seconds = 0.0

    async def dispatch_once(self) -> DispatchReport:
        began = time.perf_counter()
        try:
            return await self._original()
        finally:
            self.cycles += 1
            self.seconds += time.perf_counter() - began


def _by_endpoint(counts: RequestCounts) -> Counter[str]:
    """Requests by kind (send, get, list; the API's own name for any other call)."""
    totals: Counter[str] = Counter()
    for (endpoint, _outcome), number in counts.items():
        totals[KINDS.get(endpoint, endpoint)] += number
    return totals


def request_counts(daemon: Daemon) -> RequestCounts:
    """The client's count of its requests, by endpoint and outcome, whichever API."""
    if isinstance(daemon.provider, DropboxFaxClient):
        return daemon.provider.request_counts
    return daemon.client.request_counts


async def callbacks_off(daemon: Daemon) -> None:
    """The provider posts nothing to this daemon any more: polling alone must tell."""
    if isinstance(daemon.provider, DropboxFaxClient):
        await daemon.provider.set_callback_url("")
    else:
        await daemon.client.update_account(inbound_url="", outbound_url="")


def scaled_settings(state_dir: Path, scale: float, api: str = "hellofax") -> Settings:
    """The sandbox's timings (v3's rate window among them) and the poller's defaults, all
    multiplied by `scale`."""
    real = PollingSettings()
    return bench_settings(
        state_dir,
        sandbox={"speed": repr(scale), "api": api, "rate_window": 60 * scale},
        polling={
            "tick": real.tick.total_seconds() * scale,
            "first_interval": real.first_interval.total_seconds() * scale,
            "max_interval": real.max_interval.total_seconds() * scale,
            "callback_grace": real.callback_grace.total_seconds() * scale,
        },
    )


def _number(index: int, slow_every: int) -> str:
    if slow_every and index % slow_every == slow_every - 1:
        return f"+1415{200 + index // slow_every:03d}0007"  # the sandbox's slow ending
    return fax_number(index)


def _queue_batch(
    store: Store, spool: Spool, document: bytes, indexes: Iterable[int], slow_every: int
) -> None:
    for index in indexes:
        request = FaxRequest(
            numbers=[parse_fax_number(_number(index, slow_every))],
            documents=[IncomingDocument("letter.pdf", document)],
            intake=Intake.CLI,
        )
        queue_fax(store, spool, request)


async def _queue_all(daemon: Daemon, faxes: int, spec: RunSpec, scale: float) -> None:
    spool = Spool(daemon.settings.spool_dir)
    document = one_page_pdf()
    batch_size = 1 if spec.every else QUEUE_BATCH
    for start in range(0, faxes, batch_size):
        batch = range(start, min(faxes, start + batch_size))
        await asyncio.to_thread(_queue_batch, daemon.store, spool, document, batch, spec.slow_every)
        daemon.dispatcher.wake()
        if spec.every:
            await asyncio.sleep(spec.every * scale)


async def _until_settled(store: Store, faxes: int, deadline: float) -> dict[JobState, int]:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while True:
        by_state = await asyncio.to_thread(store.count_by_state)
        if sum(by_state[state] for state in SETTLED_STATES) >= faxes:
            return by_state
        if loop.time() > give_up:
            raise SystemExit(f"not settled after {deadline:.0f}s: {_nonzero(by_state)}")
        await asyncio.sleep(0.05)


def _nonzero(by_state: dict[JobState, int]) -> dict[str, int]:
    return {state.value: number for state, number in by_state.items() if number}


class SkippedTicks(logging.Filter):
    """Counts, and keeps off the screen, the scheduler's notes that a tick was skipped
    because the previous poll cycle was still running."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" in record.getMessage():
            self.count += 1
            return False
        return True


async def one_run(spec: RunSpec, faxes: int, scale: float, root: Path) -> RunResult:
    settings = scaled_settings(root / spec.name.replace(" ", "-").replace(",", ""), scale, spec.api)
    result = RunResult(spec, spec.faxes or faxes, settings.polling.page_size)
    skipped = SkippedTicks()
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    scheduler_log.addFilter(skipped)
    try:
        # Generous: settling has its own deadline; this one catches a stop that hangs.
        async with asyncio.timeout(_settle_deadline(scale) + STOP_DEADLINE):
            async with started(settings) as daemon:
                await _measure(daemon, spec, scale, result)
    except TimeoutError:
        raise SystemExit(f"{spec.name}: the daemon did not stop in time") from None
    finally:
        scheduler_log.removeFilter(skipped)
    result.skipped_ticks = skipped.count
    return result


async def _measure(daemon: Daemon, spec: RunSpec, scale: float, result: RunResult) -> None:
    recorder = PollRecorder(daemon, daemon.poller.poll_once)
    dispatching = DispatchRecorder(daemon.dispatcher.dispatch_once)
    with (
        mock.patch.object(daemon.poller, "poll_once", recorder.poll_once),
        mock.patch.object(daemon.dispatcher, "dispatch_once", dispatching.dispatch_once),
    ):
        if not spec.callbacks:
            await callbacks_off(daemon)
        counts = request_counts(daemon)
        before = counts.copy()
        began = time.perf_counter()
        await _queue_all(daemon, result.faxes, spec, scale)
        by_state = await _until_settled(daemon.store, result.faxes, _settle_deadline(scale))
        result.wall = time.perf_counter() - began
        spent = counts - before
        result.dispatch_cycles, result.dispatch_seconds = dispatching.cycles, dispatching.seconds
    result.cycles = recorder.cycles
    result.by_endpoint = _by_endpoint(spent)
    for (endpoint, outcome), number in spent.items():
        if not (isinstance(outcome, int) and 200 <= outcome < 300):
            result.errors[f"{endpoint} {outcome}"] = number
    result.outcomes = Counter(_nonzero(by_state))
    assert daemon.sandbox is not None
    result.callbacks = len(daemon.sandbox.callback_attempts())
    result.duplicates = len(daemon.sandbox.duplicates())
    result.rss_mib = rss_kib() / 1024


def _settle_deadline(scale: float) -> float:
    """A fax takes 70 s to 5 min at realistic speed; allow a slow machine plenty."""
    return 60 + 5000 * scale


def _bound(cycle: PollCycle, page_size: int) -> int:
    return math.ceil(cycle.in_flight / page_size)


def _requests_table(results: list[RunResult]) -> str:
    rows: list[list[object]] = []
    for result in results:
        n = result.faxes
        # Polling at best reads each outcome once, on a full page.
        floor = 0 if result.spec.callbacks else math.ceil(n / result.page_size)
        ideal = ["1.000", "0.000", f"{floor / n:.3f}", f"{(n + floor) / n:.3f}", "", "", ""]
        rows.append([f"{result.spec.name}: ideal", *ideal])
        others = result.requests - sum(result.by_endpoint[e] for e in (SEND, GET, LIST))
        rows.append(
            [
                f"{result.spec.name}: measured",
                result.per_fax(result.by_endpoint[SEND]),
                result.per_fax(result.by_endpoint[GET]),
                result.per_fax(result.by_endpoint[LIST]),
                result.per_fax(result.requests) + (f" ({others} other)" if others else ""),
                result.per_fax(result.callbacks),
                f"{result.wall:.1f}",
                f"{n / result.wall:.0f}",
            ]
        )
    headers = ["requests per fax", "send", "get", "list", "total", "callbacks", "wall s", "fax/s"]
    return table(headers, rows)


def _cycles_table(results: list[RunResult]) -> str:
    rows: list[list[object]] = []
    for result in results:
        cycles, size = result.cycles, result.page_size
        if not cycles:
            rows.append([result.spec.name, 0, "", "", "", "", "", result.skipped_ticks])
            continue
        worst = max(cycles, key=lambda c: (c.pages - _bound(c, size), c.pages))
        rows.append(
            [
                result.spec.name,
                len(cycles),
                sum(1 for c in cycles if c.pages),
                f"{worst.pages} vs {_bound(worst, size)} ({worst.due} due, {worst.in_flight} out)",
                sum(1 for c in cycles if c.pages > _bound(c, size)),
                sum(c.lookups for c in cycles),
                f"{max(c.seconds for c in cycles):.2f}",
                result.skipped_ticks,
            ]
        )
    headers = [
        "poll cycles",
        "cycles",
        "listing",
        "worst: pages vs ceil(out/size)",
        "over bound",
        "lookups",
        "longest s",
        "ticks skipped",
    ]
    return table(headers, rows)


def report(results: list[RunResult]) -> None:
    print(_requests_table(results))
    print()
    print(_cycles_table(results))
    print()
    for result in results:
        extra = f"; non-2xx answers: {dict(result.errors)}" if result.errors else ""
        print(
            f"{result.spec.name}: outcomes {dict(result.outcomes)}; sandbox duplicates "
            f"{result.duplicates}; {result.dispatch_cycles} dispatch cycles "
            f"({result.dispatch_seconds:.1f} s); RSS after the run {result.rss_mib:.0f} MiB{extra}"
        )
    for result in results:
        if result.spec.callbacks:
            per_fax = result.requests / result.faxes
            verdict = "met" if per_fax <= GOAL_WITH_CALLBACKS else "NOT MET"
            print(
                f"goal, {result.spec.name}: at most {GOAL_WITH_CALLBACKS} requests per fax: "
                f"{per_fax:.3f}, {verdict}"
            )
        else:
            over = sum(1 for c in result.cycles if c.pages > _bound(c, result.page_size))
            verdict = "met" if not over else f"NOT MET in {over} of {len(result.cycles)} cycles"
            print(f"goal, {result.spec.name}: at most ceil(out / page size) pages: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="API requests per completed fax")
    parser.add_argument("--faxes", type=int, default=1000, help="faxes per run (1000)")
    parser.add_argument(
        "--scale",
        type=float,
        default=0.05,
        help="multiplier of every provider and poll timing (0.05: a 1-page fax in 3.5 s)",
    )
    parser.add_argument(
        "--runs",
        default=",".join(str(i) for i in range(1, len(RUNS) + 1)),
        help="which runs, by number: " + ", ".join(f"{i}: {r.name}" for i, r in enumerate(RUNS, 1)),
    )
    args = parser.parse_args(argv)
    chosen = [RUNS[int(i) - 1] for i in args.runs.split(",")]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    banner(
        f"bench_pipeline: API requests per completed fax, one-page faxes, {args.faxes} at once, "
        f"provider and poll timings x{args.scale:g}"
    )
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-") as root:
        results = [
            asyncio.run(one_run(spec, args.faxes, args.scale, Path(root))) for spec in chosen
        ]
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
