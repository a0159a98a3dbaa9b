"""A backlog of queued jobs: the time of a dispatch cycle, of the poll cycles that settle
what it sent, and the memory.

Run from the repository: `.venv/bin/python bench/bench_backlog.py [--sizes 100,10000]`.

For each size a store is filled with that many queued one-page faxes (the document spooled
once and shared, the jobs created with Store.create_jobs), then copied afresh for every
measurement, each in a child process of its own so no two share a heap:
- parts: the dispatcher, tracker and poller built as faxgate.app builds them, against the
  built-in sandbox at its "test" speed. First five Dispatcher.dispatch_once cycles with
  room for one fax each (the steady state under a backlog: a fax ends, one slot frees),
  then one with the provider's room (200 at most), then, once the sandbox has settled
  those faxes, Poller.poll_once with every submitted job due, cycle after cycle (the
  clock moved on each time, so the jobs pushed back are due again) until none is left
  submitted: the first cycle's figures, the cycles needed and their total time. The
  sandbox removes a fax once sent, so the list shows none of them and each is asked for
  on its own, at most MAX_ASKED_ALONE in a cycle. Repeated (--repeat), the median kept;
- daemon: the whole daemon (faxgate.app.started) until its first 100 faxes are sent.
Memory is the child's resident set (VmRSS) after imports, at the end, and at its peak
(VmHWM). The smallest size is the baseline: the ratio column shows how cost grows with
the backlog. A cycle's work grows with what it sends or reads (at most 200 jobs), so its
time is also given per job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    banner,
    bench_settings,
    fax_number,
    fill_store,
    peak_rss_kib,
    ratio,
    rss_kib,
    table,
)

from faxgate.app import sandbox_settings, started
from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake, JobState
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.provider import HelloFaxProvider, open_client
from faxgate.hellofax.sandbox import Sandbox
from faxgate.sending.dispatcher import Dispatcher
from faxgate.sending.poller import Poller
from faxgate.sending.tracker import Tracker
from faxgate.settings import Settings
from faxgate.store import NewDocument, NewJob, Store

DAEMON_TARGET = 100  # faxes the daemon child sends before its memory is read
ONE_SLOT_CYCLES = 5  # cycles with room for one fax, as when one fax at the provider ends
MAX_POLL_CYCLES = 20  # poll cycles to settle the backlog before the run gives up
SANDBOX_FINAL = frozenset({"S", "E", "H"})

Figures = dict[str, Any]  # a child's figures, read back from its JSON


@dataclass(frozen=True, slots=True)
class PartsFigures:
    one_slot_s: float  # the median of ONE_SLOT_CYCLES cycles sending one fax each
    dispatch_s: float
    sent: int
    poll_s: float  # the first poll cycle
    polled: int  # jobs due in the first poll cycle
    settled_first: int  # jobs the first poll cycle settled
    pages: int
    poll_cycles: int  # poll cycles until no job is left at the provider
    settle_s: float  # their time, together
    rss_start_kib: int
    rss_end_kib: int
    peak_kib: int


@dataclass(frozen=True, slots=True)
class DaemonFigures:
    to_target_s: float  # from the start of the daemon to DAEMON_TARGET faxes sent
    rss_start_kib: int
    rss_end_kib: int
    peak_kib: int


def settings_for(state_dir: Path) -> Settings:
    return bench_settings(state_dir, sandbox={"speed": "test"})


# ---------------------------------------------------------------------- the backlog


def fill_backlog(state_dir: Path, size: int) -> None:
    """A state directory whose store holds `size` queued faxes sharing one document."""

    def job(i: int, document: NewDocument) -> NewJob:
        return NewJob(to_number=fax_number(i), intake=Intake.CLI, documents=[document])

    fill_store(settings_for(state_dir), size, job)


# ---------------------------------------------------------------------- in the children


async def measure_parts(state_dir: Path) -> PartsFigures:
    rss_start = rss_kib()
    settings = settings_for(state_dir)
    store = Store.open(settings.database_path)
    sandbox = Sandbox(sandbox_settings(settings))
    await sandbox.start()
    client = open_client(settings, sandbox.base_url)
    try:
        provider = HelloFaxProvider(client)
        dispatcher = Dispatcher(store, provider, settings.dispatch, polling=settings.polling)
        tracker = Tracker(store, settings.retry.policy())
        clock = _Ahead()
        poller = Poller(store, provider, tracker, settings.polling, clock=clock)

        one_slot_s = await _one_slot_cycles(store, client, settings)
        began = time.perf_counter()
        dispatched = await dispatcher.dispatch_once()
        dispatch_s = time.perf_counter() - began

        await _until(lambda: _sandbox_settled(sandbox), what="the sandbox settles the faxes")
        pages_before = _list_reads(client.request_counts)
        began = time.perf_counter()
        first = await poller.poll_once()
        poll_s = time.perf_counter() - began
        pages = _list_reads(client.request_counts) - pages_before
        cycles, settle_s, left = 1, poll_s, first.due - first.settled
        while left:
            if cycles >= MAX_POLL_CYCLES:
                raise SystemExit(f"{left} jobs still at the provider after {cycles} poll cycles")
            clock.move_on()
            began = time.perf_counter()
            polled = await poller.poll_once()
            settle_s += time.perf_counter() - began
            cycles += 1
            left -= polled.settled
            if polled.settled == 0:
                raise SystemExit(f"a poll cycle settled none of the {left} jobs left")
    finally:
        await client.aclose()
        await sandbox.stop()
        store.close()
    return PartsFigures(
        one_slot_s=one_slot_s,
        dispatch_s=dispatch_s,
        sent=dispatched.submitted,
        poll_s=poll_s,
        polled=first.due,
        settled_first=first.settled,
        pages=pages,
        poll_cycles=cycles,
        settle_s=settle_s,
        rss_start_kib=rss_start,
        rss_end_kib=rss_kib(),
        peak_kib=peak_rss_kib(),
    )


async def measure_daemon(state_dir: Path) -> DaemonFigures:
    rss_start = rss_kib()
    began = time.perf_counter()
    async with started(settings_for(state_dir)) as daemon:
        store = daemon.store

        def enough_sent() -> bool:
            return store.count_by_state()[JobState.SENT] >= DAEMON_TARGET

        await _until(enough_sent, what=f"{DAEMON_TARGET} faxes sent")
        to_target = time.perf_counter() - began
        return DaemonFigures(to_target, rss_start, rss_kib(), peak_rss_kib())


async def _one_slot_cycles(store: Store, client: HelloFaxClient, settings: Settings) -> float:
    """Under a backlog the provider is full and each fax that ends frees one slot: time
    cycles that find room for exactly one fax."""
    seconds = []
    for in_flight in range(ONE_SLOT_CYCLES):
        room = settings.dispatch.model_copy(update={"max_in_flight": in_flight + 1})
        dispatcher = Dispatcher(store, HelloFaxProvider(client), room, polling=settings.polling)
        began = time.perf_counter()
        sent = await dispatcher.dispatch_once()
        seconds.append(time.perf_counter() - began)
        if sent.submitted != 1:
            raise SystemExit(f"a cycle with room for one fax sent {sent.submitted}")
    return statistics.median(seconds)


class _Ahead:
    """The poller's clock: a day ahead, so every submitted job is due its poll, and a
    further day ahead after each move, so the jobs a cycle pushed back are due again."""

    def __init__(self) -> None:
        self.days = 1

    def move_on(self) -> None:
        self.days += 1

    def __call__(self) -> datetime:
        return utc_now() + timedelta(days=self.days)


def _sandbox_settled(sandbox: Sandbox) -> bool:
    return all(tx.status in SANDBOX_FINAL for tx in sandbox.inspect())


def _list_reads(counts: dict[tuple[str, int | str], int]) -> int:
    return sum(n for (endpoint, _), n in counts.items() if endpoint == "list_transmissions")


async def _until(done: Callable[[], bool], *, what: str, deadline: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline
    while not done():  # in the loop: the sandbox is single-threaded
        if loop.time() > give_up:
            raise SystemExit(f"timed out after {deadline:.0f}s waiting until {what}")
        await asyncio.sleep(0.02)


def child(kind: str, state_dir: Path) -> None:
    figures = asdict(
        asyncio.run(measure_parts(state_dir))
        if kind == "parts"
        else asyncio.run(measure_daemon(state_dir))
    )
    print(json.dumps(figures))


# ---------------------------------------------------------------------- in the parent


def _run_child(kind: str, template: Path, scratch: Path) -> Figures:
    """A fresh copy of the backlog, measured by a child process of its own."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(template, scratch)
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--state", str(scratch)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    figures: Figures = json.loads(done.stdout.strip().splitlines()[-1])
    shutil.rmtree(scratch)
    return figures


def _median(runs: Sequence[Figures], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def report(
    sizes: list[int], parts: dict[int, list[dict[str, Any]]], daemon: dict[int, Any]
) -> None:
    base = sizes[0]

    def row(label: str, value: Callable[[int], float], shown: Callable[[float], str]) -> list[str]:
        cells = [shown(value(size)) for size in sizes]
        ratios = [ratio(value(size), value(base)) for size in sizes[1:]]
        return [label, *cells, *ratios]

    def median(key: str) -> Callable[[int], float]:
        return lambda size: _median(parts[size], key)

    def per_job(seconds: str, jobs: str) -> Callable[[int], float]:
        return lambda size: _median(parts[size], seconds) * 1000 / _median(parts[size], jobs)

    def of_daemon(key: str) -> Callable[[int], float]:
        return lambda size: float(daemon[size][key])

    def ms(value: float) -> str:
        return f"{value * 1000:.0f}"

    def two_ms(value: float) -> str:
        return f"{value * 1000:.2f}"

    def plain(value: float) -> str:
        return f"{value:.0f}"

    def two(value: float) -> str:
        return f"{value:.2f}"

    headers = ["queued jobs", *(f"{size:,}" for size in sizes)]
    headers += [f"ratio {size:,}/{base:,}" for size in sizes[1:]]
    rows = [
        row("dispatch cycle, room for 1: ms", median("one_slot_s"), two_ms),
        row("dispatch cycle: faxes sent", median("sent"), plain),
        row("dispatch cycle: ms", median("dispatch_s"), ms),
        row("dispatch cycle: ms per fax sent", per_job("dispatch_s", "sent"), two),
        row("first poll cycle: jobs due", median("polled"), plain),
        row("first poll cycle: jobs settled", median("settled_first"), plain),
        row("first poll cycle: list pages read", median("pages"), plain),
        row("first poll cycle: ms", median("poll_s"), ms),
        row("first poll cycle: ms per job settled", per_job("poll_s", "settled_first"), two),
        row("poll cycles to settle all", median("poll_cycles"), plain),
        row("poll cycles to settle all: ms", median("settle_s"), ms),
        row("poll cycles: ms per job settled", per_job("settle_s", "polled"), two),
        row("parts: RSS after imports, MiB", median("rss_start_kib"), _mib),
        row("parts: RSS at the end, MiB", median("rss_end_kib"), _mib),
        row("parts: peak RSS, MiB", median("peak_kib"), _mib),
        row("daemon: RSS after imports, MiB", of_daemon("rss_start_kib"), _mib),
        row(f"daemon: RSS after {DAEMON_TARGET} sent, MiB", of_daemon("rss_end_kib"), _mib),
        row("daemon: peak RSS, MiB", of_daemon("peak_kib"), _mib),
        row(f"daemon: s to {DAEMON_TARGET} sent", of_daemon("to_target_s"), two),
    ]
    print(table(headers, rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dispatch and poll cycles under a backlog")
    parser.add_argument("--sizes", default="100,10000", help="queued jobs, the first the baseline")
    parser.add_argument("--repeat", type=int, default=3, help="cycle measurements per size (3)")
    parser.add_argument("--child", choices=["parts", "daemon"], help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.state)
        return 0

    sizes = [int(size) for size in args.sizes.split(",")]
    banner(
        f"bench_backlog: a dispatch cycle and the poll cycles after it with "
        f"{' vs '.join(map(str, sizes))} queued jobs (median of {args.repeat}), and the memory"
    )
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-") as root:
        templates = {size: Path(root) / f"backlog-{size}" for size in sizes}
        for size, template in templates.items():
            fill_backlog(template, size)
        scratch = Path(root) / "run"
        parts: dict[int, list[Figures]] = {size: [] for size in sizes}
        for _ in range(args.repeat):  # sizes interleaved: a noisy spell hits them alike
            for size in sizes:
                parts[size].append(_run_child("parts", templates[size], scratch))
        daemon = {size: _run_child("daemon", templates[size], scratch) for size in sizes}
    report(sizes, parts, daemon)
    return 0


if __name__ == "__main__":
    sys.exit(main())
