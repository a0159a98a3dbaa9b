"""1,000 files dropped at once into a hot folder: from each file's close to the sandbox
receiving its fax, beside a plain loop that lists a folder every second (the cron way).

Run from the repository: `.venv/bin/python bench/bench_hotfolder.py [--files N]`.

One daemon (faxgate.app.started), the sandbox in a process of its own (`faxgate sandbox`,
as the provider is one) at its "test" speed: a fax is answered at once and done in tens
of milliseconds. State under a temporary directory on the same disk as the folders. Two
runs, one after the other, each on an idle daemon:
- hot folder: the daemon watches outbox/ (inotify). N one-page PDFs, each to its own
  number, are written as fast as they can be; each file's close time is noted;
- cron loop: a task in the same process lists cron-outbox/ every second and hands every
  file it finds to faxgate.intake.queue.queue_fax (copied into the spool), then removes
  it and wakes the dispatcher: what a hot-folder script run by cron does, minus the cron.
  A file it finds half written is refused by queue_fax and left for the next sweep.
- trickle: the same daemon, files dropped one at a time at a steady pace (a busy office's
  scanners), so each file meets an idle pipeline: the intake's and dispatcher's latency
  rather than their throughput;
- provider ceiling: no faxgate at all, the same client (faxgate.hellofax.client) posting
  N faxes to the same sandbox with the dispatcher's concurrency, all "closed" at the
  start: the fastest the sandbox takes N faxes from one client on this machine. No
  pipeline in front of it can beat this row, so the burst rows are read against it.
For each file: close -> job queued in the store (the intake's own delay), and close ->
the sandbox receiving the POST (the sandbox's own created_at): p50, p99, max, and files
per second from the first close to the last one queued and the last POST. Every number
must be faxed exactly once.
The figures go to bench/README.md (section "Hot folder").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import socket
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from _common import (
    banner,
    bench_settings,
    fax_number,
    machine,
    one_page_pdf,
    table,
    write_readme_section,
)

from faxgate.app import Daemon, started
from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.hellofax.models import Upload
from faxgate.hellofax.provider import open_client
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.sandbox.control import control_url
from faxgate.sending.dispatcher import CONCURRENCY
from faxgate.settings import FolderSettings, Settings
from faxgate.store.spool import Spool

SECTION = "## Hot folder (`bench_hotfolder.py`)"
GOAL_P50, GOAL_P99 = 0.100, 0.500  # seconds, close -> POST
CRON_INTERVAL = 1.0
TOKEN = secrets.token_urlsafe(24)  # the callback URLs' secret


@dataclass(frozen=True)
class Run:
    name: str
    files: int
    closed: dict[str, float]  # number digits -> close time (Unix seconds)
    queued: dict[str, float]  # -> job created
    posted: dict[str, float]  # -> sandbox received the POST
    sends: Counter[str]

    def delays(self, stage: dict[str, float]) -> list[float]:
        return sorted(stage[n] - self.closed[n] for n in self.closed if n in stage)

    def rate(self, stage: dict[str, float]) -> float:
        """Files per second through `stage`, from the first close to the last of them."""
        span = max(stage.values()) - min(self.closed.values())
        return len(stage) / span if span > 0 else float("inf")

    @property
    def exactly_once(self) -> bool:
        return set(self.sends) == set(self.closed) and set(self.sends.values()) == {1}


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(share * len(values)) - 1))
    return values[index]


async def drop(outbox: Path, numbers: list[str], pdf: bytes) -> dict[str, float]:
    """Write one file per number as fast as possible; each file's close time."""

    def write() -> dict[str, float]:
        closed = {}
        for number in numbers:
            with (outbox / f"{number}_letter.pdf").open("wb") as handle:
                handle.write(pdf)
            closed[number.lstrip("+")] = time.time()
        return closed

    return await asyncio.to_thread(write)


async def trickle(
    outbox: Path, numbers: list[str], pdf: bytes, per_second: float
) -> dict[str, float]:
    """Write one file per number at a steady pace (the load, not a synchronisation)."""
    closed = {}
    start = time.monotonic()
    for index, number in enumerate(numbers):
        await asyncio.sleep(max(0.0, start + index / per_second - time.monotonic()))
        closed.update(await drop(outbox, [number], pdf))
    return closed


async def provider_ceiling(base_url: str, settings: Settings, numbers: list[str], pdf: Path) -> Run:
    """The same client posting straight to the sandbox, CONCURRENCY at a time."""
    slots = asyncio.Semaphore(CONCURRENCY)
    client = open_client(settings, base_url, lambda _endpoint, _outcome: None)

    async def send(number: str) -> None:
        async with slots:
            await client.send(number.lstrip("+"), [Upload.from_path(pdf)])

    try:
        start = time.time()
        await asyncio.gather(*(send(number) for number in numbers))
    finally:
        await client.aclose()
    closed = {number.lstrip("+"): start for number in numbers}
    posted = {post.to: post.at for post in await inspect(base_url) if post.to in closed}
    sends = Counter(post.to for post in await inspect(base_url) if post.to in closed)
    return Run("provider ceiling (no faxgate)", len(numbers), closed, {}, posted, sends)


@dataclass(frozen=True)
class Post:
    to: str
    at: float  # when the sandbox received it (Unix seconds)


async def inspect(base_url: str) -> list[Post]:
    """Every fax the sandbox received (GET /_sandbox/transmissions)."""
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(control_url(base_url, "transmissions"))
    answer.raise_for_status()
    return [Post(t["to"], t["created_at"]) for t in answer.json() if not t["is_inbound"]]


@contextlib.asynccontextmanager
async def sandbox_process(state_dir: Path) -> AsyncIterator[str]:
    """The sandbox in a process of its own, as the provider is: it takes no CPU time
    from the daemon's interpreter. Yields its base URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "faxgate", "sandbox", "--port", str(port)),
        *("--speed", "test", "--state-dir", str(state_dir)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                await inspect(base_url)
                break
            await asyncio.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        await process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def settled(daemon: Daemon, base_url: str, numbers: set[str], within: float) -> None:
    """Until every number reached the sandbox and nothing is left to submit. (Faxes the
    provider has may still wait for their outcome: that no longer loads the dispatcher.)"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        seen = {post.to for post in await inspect(base_url)}
        counts = daemon.store.count_by_state()
        busy = counts[JobState.QUEUED] + counts[JobState.SUBMITTING]
        if numbers <= seen and not busy:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"not every fax reached the sandbox within {within:.0f}s")


async def measure(daemon: Daemon, base_url: str, name: str, closed: dict[str, float]) -> Run:
    inspected = [post for post in await inspect(base_url) if post.to in closed]
    jobs = daemon.store.recent_jobs(10 * len(closed) + 100)
    queued = {
        job.to_number.lstrip("+"): job.created_at.timestamp()
        for job in jobs
        if job.to_number.lstrip("+") in closed
    }
    posted = {post.to: post.at for post in inspected}
    return Run(name, len(closed), closed, queued, posted, Counter(post.to for post in inspected))


@contextlib.asynccontextmanager
async def cron_loop(daemon: Daemon, outbox: Path) -> AsyncIterator[None]:
    """List the folder every second; queue what is there (copied), remove it."""
    spool = Spool(daemon.settings.spool_dir)

    def sweep() -> int:
        taken = 0
        for entry in sorted(os.scandir(outbox), key=lambda e: e.name):
            number = parse_fax_number(entry.name.split("_", 1)[0])
            path = Path(entry.path)
            request = FaxRequest(
                numbers=[number],
                documents=[IncomingDocument(entry.name, path)],
                intake=Intake.CLI,
            )
            try:
                queue_fax(daemon.store, spool, request)
            except DocumentRefused:
                continue  # still being written (empty, cut short): the next sweep takes it
            path.unlink()
            taken += 1
        return taken

    async def loop() -> None:
        while True:
            if await asyncio.to_thread(sweep):
                daemon.dispatcher.wake()
            await asyncio.sleep(CRON_INTERVAL)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def bench(files: int, trickled: int, pace: float, within: float) -> list[Run]:
    pdf = one_page_pdf()
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-") as temp:
        root = Path(temp)
        outbox, cron_outbox = root / "outbox", root / "cron-outbox"
        outbox.mkdir()
        cron_outbox.mkdir()
        pdf_file = root / "letter.pdf"
        pdf_file.write_bytes(pdf)
        http_port = free_port()
        async with sandbox_process(root / "sandbox") as base_url:
            settings = bench_settings(
                root / "state",
                provider={"base_url": base_url},
                http={"listen": f"127.0.0.1:{http_port}", "callback_token": TOKEN},
            ).model_copy(update={"folders": [FolderSettings(path=outbox)]})
            async with started(settings) as daemon:
                callbacks = f"http://127.0.0.1:{http_port}/callbacks/{TOKEN}"
                await daemon.client.update_account(outbound_url=f"{callbacks}/outbound")

                # First, while the daemon idles: its callbacks load the machine as in the
                # runs that follow (they are for transmissions it does not know).
                numbers = [fax_number(2 * files + trickled + i) for i in range(files)]
                ceiling = await provider_ceiling(base_url, settings, numbers, pdf_file)

                closed = await drop(outbox, [fax_number(i) for i in range(files)], pdf)
                await settled(daemon, base_url, set(closed), within)
                hot = await measure(daemon, base_url, "hot folder (inotify)", closed)

                async with cron_loop(daemon, cron_outbox):
                    numbers = [fax_number(files + i) for i in range(files)]
                    closed = await drop(cron_outbox, numbers, pdf)
                    await settled(daemon, base_url, set(closed), within)
                name = f"cron loop ({CRON_INTERVAL:g} s)"
                cron = await measure(daemon, base_url, name, closed)

                numbers = [fax_number(2 * files + i) for i in range(trickled)]
                closed = await trickle(outbox, numbers, pdf, pace)
                await settled(daemon, base_url, set(closed), within)
                name = f"hot folder, {pace:g} files/s"
                paced = await measure(daemon, base_url, name, closed)
    return [ceiling, hot, cron, paced]


def report(runs: list[Run]) -> str:
    def ms(value: float) -> str:
        return f"{value * 1000:,.0f} ms"

    rows = []
    for run in runs:
        queued, posted = run.delays(run.queued), run.delays(run.posted)
        rows.append(
            [
                run.name,
                ms(percentile(queued, 0.5)) if queued else "-",
                ms(percentile(queued, 0.99)) if queued else "-",
                ms(percentile(posted, 0.5)),
                ms(percentile(posted, 0.99)),
                ms(posted[-1]) if posted else "-",
                f"{run.rate(run.queued):,.0f}" if queued else "-",
                f"{run.rate(run.posted):,.0f}",
                f"{len(run.posted)}/{run.files}" + ("" if run.exactly_once else " (NOT once)"),
            ]
        )
    headers = [
        "",
        "queued p50",
        "queued p99",
        "POST p50",
        "POST p99",
        "POST max",
        "queued/s",
        "POST/s",
        "taken once",
    ]
    return table(headers, rows)


def verdict(ceiling: Run, hot: Run, paced: Run) -> str:
    lines = []
    for run in (hot, paced):
        posted = run.delays(run.posted)
        p50, p99 = percentile(posted, 0.5), percentile(posted, 0.99)
        met = p50 < GOAL_P50 and p99 < GOAL_P99 and run.exactly_once
        lines.append(
            f"Goal for {run.name} (close -> POST): p50 < {GOAL_P50 * 1000:.0f} ms, p99 < "
            f"{GOAL_P99 * 1000:.0f} ms, all {run.files} taken exactly once: "
            f"{'met' if met else 'NOT met'} (p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms; "
            f"{'exactly once' if run.exactly_once else 'NOT exactly once'})."
        )
    best = ceiling.delays(ceiling.posted)
    lines.append(
        f"The provider ceiling alone, {ceiling.files} faxes from one client and no faxgate: "
        f"p50 {percentile(best, 0.5) * 1000:,.0f} ms, p99 {percentile(best, 0.99) * 1000:,.0f} ms,"
        f" {ceiling.rate(ceiling.posted):,.0f} POST/s; the hot folder burst reached "
        f"{hot.rate(hot.posted) / ceiling.rate(ceiling.posted):.2f} of its rate."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=200, help="files in the paced run")
    parser.add_argument("--pace", type=float, default=10.0, help="files per second, paced")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--no-readme", action="store_true", help="print only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    title = f"Hot folder: {args.files} files dropped at once, close -> sandbox POST"
    banner(title)
    runs = asyncio.run(bench(args.files, args.trickle, args.pace, args.timeout))
    ceiling, hot, _cron, paced = runs
    figures = report(runs)
    summary = verdict(ceiling, hot, paced)
    print(figures)
    print()
    print(summary)
    if not args.no_readme:
        write_readme_section(readme_section(args.files, figures, summary))
    return 0 if all(run.exactly_once for run in runs) else 1


def readme_section(files: int, figures: str, summary: str) -> str:
    about = (
        'One daemon, the sandbox in a process of its own at its "test" speed. In one run:'
        f" the provider ceiling ({files} faxes posted straight to the sandbox by the same"
        f" client, no faxgate); {files} one-page PDFs written at once into a watched folder;"
        f" the same into a folder that a loop lists every {CRON_INTERVAL:g} s, queueing what"
        f" it finds (the cron way); files dropped one at a time at a steady pace. Delays run"
        " from each file's close to its job in the store (queued) and to the sandbox"
        " receiving its POST; rates from the first close to the last file queued and the"
        " last POST."
    )
    return "\n".join(
        [
            SECTION,
            "",
            textwrap.fill(about, 88),
            "",
            f"{machine()}; {time.strftime('%Y-%m-%d %H:%M')}; `python bench/bench_hotfolder.py`.",
            "",
            "```",
            figures,
            "```",
            "",
            *(textwrap.fill(line, 88) for line in summary.splitlines()),
            "",
            *READING,
        ]
    )


# What the figures say, kept with the figures (see docs/hotfolder.md).
READING = [
    "- A burst of files is bounded by the provider, not the folder: the ceiling row is the",
    "  same client posting straight to the same sandbox with no faxgate at all, and it",
    "  needs seconds for 1,000 faxes on this machine (the sandbox checks and stores every",
    "  document). No pipeline in front of it can reach p99 < 500 ms for 1,000 files at",
    "  once; the burst rows are read against the ceiling, and the goal against the paced",
    "  row, where every file meets an idle pipeline.",
    "- The dispatcher hands faxes over at most 6 at a time (polite to the provider); its",
    "  store writes are committed in groups and its reads do not wait for commits; small",
    "  uploads leave in one write; connections are kept alive. Left to gain: in a burst",
    "  the daemon spends some 10 ms of CPU per fax (the HTTP client, 2 to 3 callbacks, the",
    "  store) beside the intake's work, so on 2 cores it reaches about half the ceiling's",
    "  rate with 1,000 files at once (three quarters with 200).",
    "- The hot folder's own delay in a burst (close -> queued) is its batch work sharing",
    "  2 cores with the dispatcher, the callbacks and the writer of the files: files are",
    "  claimed 250 at a time (a claim record, a link and an unlink per file, hashing and",
    "  flushing in 8 threads, one transaction).",
    "- The cron loop queues a file up to a second late, one transaction and one copy per",
    "  file, and meets files still being written (refused by the document check here, and",
    "  taken at the next sweep).",
    "",
]


if __name__ == "__main__":
    sys.exit(main())
