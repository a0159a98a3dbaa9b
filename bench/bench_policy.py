"""The sending policy: one call at a time per number, and what rules cost a dispatch cycle.

Run from the repository: `.venv/bin/python bench/bench_policy.py [--faxes 1000]`.

1. Serialisation. The whole daemon (faxgate.app.started) on the built-in sandbox at a
   hundredth of real time (a one-page fax converts in 0.1 s and transmits in 0.6 s), with
   the sandbox's `one_call_per_line` switch on: a fax sent while another to the same number
   is still at the provider finds the line busy, as a fax machine's does. 1,000 one-page
   faxes to 50 numbers, queued in bursts of 20 per number (as an office sends a batch to a
   pharmacy), 3 numbers always busy (they end 0001). A busy call is tried again once,
   0.5 s later (the [retry] settings, shrunk as the sandbox's clock is). Run twice in the
   same process, with `calls_per_number` 0 (no limit) and 1 (the default), each on a fresh
   state directory: calls made, busy outcomes, faxes sent and failed, and the time until
   every fax had ended (and until the 47 good numbers' faxes had).

2. A dispatch cycle's cost. A store filled with queued one-page faxes; the time of what a
   cycle does before it sends: read the due jobs (Store.due_jobs, room for 200, one call
   per number) and judge them by the rules (faxgate.sending.policy.judge_due). The rules:
   none, or 100 of which 99 match nothing and the last matches every fax (allowed hours
   always open, a limit per sender, a page limit that counts each PDF's pages). The
   median of 20 cycles, each on the same store (judging writes nothing when every job may
   go). Baseline: 100 queued, no rules.

3. A whole dispatch cycle with room for one fax (the steady state under a backlog: one
   fax ends, one slot frees), against the built-in sandbox over HTTP at its "test" speed:
   reading, judging, the send and its commits. The median of 9 cycles, on the stores of 2.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import time as clock_time
from pathlib import Path
from typing import Any

from _common import banner, bench_settings, fill_store, one_page_pdf, ratio, table

from faxgate.app import sandbox_settings, started
from faxgate.clock import utc_now
from faxgate.domain.jobs import FINISHED_STATES, Intake, JobState
from faxgate.domain.sending_rules import Hours, Match, Rule
from faxgate.hellofax.provider import HelloFaxProvider, open_client
from faxgate.hellofax.sandbox import Sandbox
from faxgate.sending.dispatcher import Dispatcher
from faxgate.sending.policy import SendingPolicy, judge_due
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool

NUMBERS = 50
BUSY_NUMBERS = ("+14155550001", "+12125550001", "+13125550001")  # always busy (0001)
CYCLES = 20
ONE_SLOT_CYCLES = 9


def good_number(index: int) -> str:
    return f"+1415555{2000 + index:04d}"


def destinations() -> list[str]:
    return [*BUSY_NUMBERS, *(good_number(i) for i in range(NUMBERS - len(BUSY_NUMBERS)))]


# ---------------------------------------------------------------------- 1. serialisation


async def serialisation_run(faxes: int, per_number: int, state_dir: Path) -> dict[str, Any]:
    settings = bench_settings(
        state_dir,
        sandbox={"speed": "0.01"},
        retry={"busy_retries": 1, "busy_delay": 0.5, "no_answer_retries": 0},
        polling={"tick": 0.05, "first_interval": 0.2, "max_interval": 0.5, "callback_grace": 0.2},
        dispatch={"backoff_first": 0.05, "backoff_max": 0.5},
        policy={"calls_per_number": per_number},
    )
    numbers = destinations()
    async with started(settings) as daemon:
        assert daemon.sandbox is not None
        daemon.sandbox.faults.one_call_per_line = True
        spooled = Spool(settings.spool_dir).store_bytes(one_page_pdf(), suffix=".pdf")
        document = NewDocument("letter.pdf", spooled, "application/pdf")
        store = daemon.store
        began = time.perf_counter()
        jobs = store.create_jobs(
            [
                NewJob(
                    to_number=numbers[i * NUMBERS // faxes], intake=Intake.CLI, documents=[document]
                )
                for i in range(faxes)
            ]
        )
        daemon.dispatcher.wake()
        good = {job.id for job in jobs if job.to_number not in BUSY_NUMBERS}
        good_done_s: float | None = None
        while True:
            finished = {j.id for j in store.jobs_in_states(FINISHED_STATES)}
            if good_done_s is None and good <= finished:
                good_done_s = time.perf_counter() - began
            if len(finished) == faxes:
                break
            if time.perf_counter() - began > 600:
                raise SystemExit(f"timed out: {len(finished)} of {faxes} faxes ended")
            await asyncio.sleep(0.05)
        total_s = time.perf_counter() - began
        calls = [tx for tx in daemon.sandbox.inspect() if not tx.is_inbound]
        counts = store.count_by_state()
        failed = store.jobs_in_states([JobState.FAILED])
    good_calls = [tx for tx in calls if "+" + tx.to not in BUSY_NUMBERS]
    return {
        "calls": len(calls),
        "busy": sum(1 for tx in calls if tx.error_code == "B"),
        "busy_good": sum(1 for tx in good_calls if tx.error_code == "B"),
        "sent": counts[JobState.SENT] + counts[JobState.PRESUMED_SENT],
        "failed": counts[JobState.FAILED],
        "failed_good": sum(1 for job in failed if job.to_number not in BUSY_NUMBERS),
        "good_done_s": good_done_s or total_s,
        "total_s": total_s,
    }


# ---------------------------------------------------------------------- 2. cycle cost


def fill(state_dir: Path, queued: int, numbers: int) -> Path:
    settings = bench_settings(state_dir)

    def job(i: int, document: NewDocument) -> NewJob:
        return NewJob(
            to_number=good_number(i % numbers),
            intake=Intake.SMTP,
            intake_ref={"sender": f"sender{i % 7}@example.com"},
            documents=[document],
        )

    fill_store(settings, queued, job)
    return settings.database_path


def hundred_rules() -> tuple[Rule, ...]:
    nothing = tuple(
        Rule(f"rule {n}", Match(numbers=(f"+44{n:03d}",)), max_pages=5) for n in range(99)
    )
    every = Rule(
        "every fax",
        hours=Hours(clock_time(0, 0), clock_time(23, 59, 59)),
        per_sender_hour=1_000_000,
        max_pages=50,
    )
    return (*nothing, every)


def cycle_cost(path: Path, rules: tuple[Rule, ...]) -> dict[str, float]:
    policy = SendingPolicy(rules=rules)
    seconds, judged = [], 0
    with Store.open(path) as store:
        for _ in range(CYCLES):
            now = utc_now()
            began = time.perf_counter()
            jobs = store.due_jobs(now, 200, per_number=policy.per_number)
            go = judge_due(policy, store, jobs, now).go if rules else jobs
            seconds.append(time.perf_counter() - began)
            judged = len(jobs)
            if len(go) != len(jobs):
                raise SystemExit("a rule held a job back: the bench's rules should not")
    return {"ms": statistics.median(seconds) * 1000, "picked": judged}


async def one_slot_cycles(path: Path, rules: tuple[Rule, ...], state_dir: Path) -> float:
    """The median time of whole cycles that find room for exactly one fax."""
    settings = bench_settings(state_dir, sandbox={"speed": "test"})
    sandbox = Sandbox(sandbox_settings(settings))
    await sandbox.start()
    client = open_client(settings, sandbox.base_url)
    seconds = []
    try:
        with Store.open(path) as store:
            for in_flight in range(ONE_SLOT_CYCLES):
                room = settings.dispatch.model_copy(update={"max_in_flight": in_flight + 1})
                dispatcher = Dispatcher(
                    store,
                    HelloFaxProvider(client),
                    room,
                    polling=settings.polling,
                    policy=SendingPolicy(rules=rules),
                )
                began = time.perf_counter()
                sent = await dispatcher.dispatch_once()
                seconds.append(time.perf_counter() - began)
                if sent.submitted != 1:
                    raise SystemExit(f"a cycle with room for one fax sent {sent.submitted}")
    finally:
        await client.aclose()
        await sandbox.stop()
    return statistics.median(seconds)


# ---------------------------------------------------------------------- the report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the sending policy's costs and gains")
    parser.add_argument("--faxes", type=int, default=1000)
    parser.add_argument("--skip-serialisation", action="store_true")
    args = parser.parse_args(argv)
    banner("bench_policy: one call at a time per number, and the cost of rules")

    with tempfile.TemporaryDirectory(prefix="faxgate-bench-policy-") as scratch:
        root = Path(scratch)
        if not args.skip_serialisation:
            runs = {
                label: asyncio.run(serialisation_run(args.faxes, per_number, root / label))
                for label, per_number in (("no limit", 0), ("one call per number", 1))
            }
            print(
                f"{args.faxes:,} faxes to {NUMBERS} numbers ({len(BUSY_NUMBERS)} always busy),"
                " the sandbox's lines taking one call at a time:"
            )

            def line(label: str, key: str, shown: Callable[[Any], str] = str) -> list[str]:
                return [label, *(shown(run[key]) for run in runs.values())]

            def seconds(value: float) -> str:
                return f"{value:.1f}"

            print(
                table(
                    ["", *runs],
                    [
                        line("calls made", "calls"),
                        line("busy outcomes", "busy"),
                        line("  of them to the good numbers", "busy_good"),
                        line("faxes sent", "sent"),
                        line("faxes failed", "failed"),
                        line("  of them to the good numbers", "failed_good"),
                        line("s until the good numbers' faxes ended", "good_done_s", seconds),
                        line("s until every fax ended", "total_s", seconds),
                    ],
                )
            )
            print()

        cases = [
            ("100 queued, 100 numbers, 0 rules", 100, 100, ()),
            ("100 queued, 100 numbers, 100 rules", 100, 100, hundred_rules()),
            ("10,000 queued, 50 numbers, 0 rules", 10_000, 50, ()),
            ("10,000 queued, 50 numbers, 100 rules", 10_000, 50, hundred_rules()),
            ("10,000 queued, 10,000 numbers, 0 rules", 10_000, 10_000, ()),
            ("10,000 queued, 10,000 numbers, 100 rules", 10_000, 10_000, hundred_rules()),
        ]
        stores: dict[tuple[int, int], Path] = {}
        rows, base = [], None
        for label, queued, numbers, rules in cases:
            if (queued, numbers) not in stores:
                stores[queued, numbers] = fill(root / f"store-{queued}-{numbers}", queued, numbers)
            figures = cycle_cost(stores[queued, numbers], rules)
            base = base or figures["ms"]
            rows.append(
                [
                    label,
                    f"{figures['picked']:.0f}",
                    f"{figures['ms']:.2f}",
                    ratio(figures["ms"], base),
                ]
            )
        print("A dispatch cycle's reading and judging (room for 200, one call per number):")
        print(table(["store", "jobs picked", "ms (median)", "vs baseline"], rows))
        print()

        whole, first = [], None
        for label, queued, numbers, rules in (cases[0], cases[3], cases[5]):
            state_dir = root / f"store-{queued}-{numbers}"
            copy = root / f"copy-{queued}-{numbers}-{len(rules)}"
            shutil.copytree(state_dir, copy)  # each run sends from a queue of its own
            path = copy / stores[queued, numbers].relative_to(state_dir)
            ms = asyncio.run(one_slot_cycles(path, rules, root / "slot")) * 1000
            first = first or ms
            whole.append([label, f"{ms:.2f}", ratio(ms, first)])
        print("A whole dispatch cycle with room for one fax, sent to the sandbox over HTTP:")
        print(table(["store", "ms (median)", "vs baseline"], whole))
    return 0


if __name__ == "__main__":
    sys.exit(main())
