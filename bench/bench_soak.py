"""Soak: faxes by mail and hot folder while the provider misbehaves and the daemon is
killed with SIGKILL again and again; then every promise is checked.

Run from the repository: `.venv/bin/python -m bench.bench_soak [--faxes 500] [--kills 5]
[--seed N]`, or `--quick` (60 faxes, 2 kills, under a minute) as a test; `--json FILE`
also writes the figures and problems, `--keep DIR` keeps the run's files, `--write-readme`
puts the figures into bench/README.md (replacing its whole section), `--no-callbacks` runs
polling only (no callback URL: every sent fax vanishes unconfirmed, as the sandbox removes
it at once). Exit status 0 when every promise was kept, 1 when
one was broken (the problems are printed, and the run's files kept), 2 for bad options.

The sandbox runs in this process (bench/soak_sandbox.py), so it outlives the daemon; its
state persists in its own directory. Faults stay on throughout: a share of 5xx answers,
connections dropped after the upload, each callback posted twice, shuffled, with a late
copy; on top, a seeded weather of slow spells (some longer than the client's timeout)
and 429 storms while the faxes come in. The daemon is `faxgate run` in a child process
(tests/daemon.py), with a hot folder and its SMTP listener on loopback
(bench/soak_daemon.py).

The faxes (bench/soak_plan.py): each with a document of its own, most to a number of their
own (a few to an earlier fax's number) whose last digits choose the sandbox's outcome
(delivered, slowly, busy, no answer, unallocated, ...), shared between
mail (SMTP to NUMBER@fax.local, 4 connections) and files (written and renamed into the
folder, in bursts), handed over at `--rate` per second (bench/soak_intake.py). The daemon
is killed at seeded moments of the run's progress (faxes handed over, jobs ended),
and started again as soon as it is dead. A message counts as accepted when it got its
250; a file when it left the folder. Then the run waits (with a deadline) until nothing
is left to do, stops the daemon with SIGTERM and checks (bench/soak_audit.py): each
accepted message and file has exactly one job, ended, with exactly one notification
(reply mail / result file); the sandbox got no document more often than its job called,
except jobs faxgate marked uncertain (counted); each outcome agrees with the provider and
with the number's rule.

`--instances N` (2 or more) runs N daemons as one gateway on a PostgreSQL database they
share, in a throwaway cluster started as the tests start one (tests/postgres.py). Each
instance has its own state directory, SMTP port and hot folder; mail and files are spread
over them in turn, callbacks go to the first (as a load balancer would pick one), each
`[store] lease` is `--lease` (5 s: longer than the provider's timeout). The first instance
is the one killed again and again (and started again); the last stops getting files
half-way, and once it has taken its folder's last file it is SIGKILLed for good (its
mail goes to the others from then on, as to a second MX host). Until a hot folder can be
shared, a file a dead instance had taken but not queued would wait for it; so the drain.
The audit reads the shared database and every instance's Maildir and folder, and the run
times each kill's takeover: from the SIGKILL until the dead process holds no work another
could do (faxes claimed or being sent, notifications owed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as `python -m bench.bench_soak` or as `python bench/bench_soak.py` (make bench): the
# bench's modules import as the other bench scripts import them, and tests/ from the root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, machine, table, write_readme_section
from soak_audit import (
    Audit,
    Evidence,
    SandboxView,
    audit,
    gather,
    job_story,
    kind_rows,
    records_by_job,
)
from soak_daemon import Kill, SoakDaemon, Timings, callback_url, free_port, states_line
from soak_intake import Ledger, drop_files, left_in, send_mail
from soak_plan import FaxPlan, KillTrigger, kill_triggers, plan_faxes, schedule
from soak_sandbox import RequestCounter, Weather, fault_weather, soak_sandbox

from faxgate.domain.jobs import ACTIVE_STATES, Intake, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.intake.folder.claims import CLAIMS_DIR
from faxgate.store import Store
from tests.conftest import wait_for
from tests.postgres import held_by, running_postgres

SECTION = "## Soak (`bench_soak.py`)"
CLUSTER_SECTION = "## Soak on several instances (`bench_soak.py --instances`)"
UNSETTLED = [JobState.QUEUED, *ACTIVE_STATES]
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
KILL_WAIT = 180.0  # seconds a kill waits for its moment before it strikes anyway
TAKEOVER_WAIT = 600.0  # seconds a dead instance's work is watched for its takeover
KIND_HEADERS = [
    "outcome by number",
    "jobs",
    "sent",
    "presumed",
    "failed",
    "uncertain",
    "other",
    "calls",
    "expected",
]
EXAMPLES = 5  # problems shown in full per promise
# Instances sharing a store: their lease (longer than the provider's timeout, 2.5 s here,
# as the docs ask), and the moment of the run's progress at which the last instance stops
# taking files, to be killed for good once its folder is empty.
LEASE = "5s"
RETIRE_AT = 0.45
DRAIN_WAIT = 60.0  # seconds the retiring instance gets to take its folder's last files


@dataclass(frozen=True, slots=True)
class Options:
    faxes: int
    kills: int
    seed: int
    rate: float
    speed: float
    settle: float
    keep: Path | None
    callbacks: bool = True  # False: polling only, every sent fax vanishes unconfirmed
    instances: int = 1  # 2 and more: sharing a PostgreSQL store
    lease: str = LEASE

    @property
    def command(self) -> str:
        cluster = f" --instances {self.instances}" if self.instances > 1 else ""
        if self.instances > 1 and self.lease != LEASE:
            cluster += f" --lease {self.lease}"
        return (
            f".venv/bin/python -m bench.bench_soak --faxes {self.faxes} --kills {self.kills}"
            f" --seed {self.seed}{cluster}" + ("" if self.callbacks else " --no-callbacks")
        )


@dataclass
class Run:
    """What a soak run did and found."""

    options: Options
    timings: Timings
    audit: Audit
    evidence: Evidence
    kills: list[Kill]
    crashes: list[str]
    orphans: int
    left_running: int
    requests: RequestCounter
    weather: Weather
    stop_code: int
    settled: bool
    wall: float
    settling: float
    log: Path
    cluster: Cluster | None = None

    @property
    def kept(self) -> bool:
        return not self.audit.problems and self.stop_code == 0 and self.settled and not self.crashes


@dataclass
class Cluster:
    """Instances sharing a PostgreSQL store: who did what, and the kills' takeovers."""

    server: str  # PostgreSQL's version
    lease: str
    names: list[str]
    logs: list[Path]
    victim: int  # the instance killed again and again (and sent the callbacks)
    retired: int  # the instance killed for good
    retired_at: float | None = None  # seconds into the run
    retired_pid: int | None = None
    takeovers: list[Takeover] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)  # by instance, read at the end

    def count_sends(self) -> None:
        """Faxes each instance handed to the provider (its log's lines, across restarts)."""
        self.sends = [
            log.read_text(errors="replace").count("submitting job=") if log.exists() else 0
            for log in self.logs
        ]


@dataclass(frozen=True, slots=True)
class Takeover:
    """From an instance's SIGKILL to the moment it held no work another could do."""

    instance: str
    pid: int
    at: float  # the kill, seconds into the run
    held: int  # faxes claimed or being sent and notifications owed, at the kill
    seconds: float | None  # None: still held when the run ended


# ---------------------------------------------------------------------------- the run


async def soak(options: Options, root: Path, store_url: str = "", server: str = "") -> Run:
    """One run; with `options.instances` > 1, the instances share the PostgreSQL database
    at `store_url` (`server`: its version, for the figures)."""
    timings = Timings()
    plans = plan_faxes(options.faxes, options.seed)
    offsets = schedule(plans, options.rate, options.seed)
    triggers = kill_triggers(options.kills, options.seed)
    ledger = Ledger()
    began = time.monotonic()
    ports = [free_port() for _ in range(options.instances)]
    # Callbacks reach the first instance, as a load balancer in front would pick one.
    async with soak_sandbox(
        root / "sandbox",
        speed=options.speed,
        seed=options.seed,
        callback_url=callback_url(ports[0]) if options.callbacks else None,
    ) as (sandbox, requests):
        daemons = _daemons(options, root, sandbox, timings, ports, began, store_url)
        for daemon in daemons:
            daemon.outbox.mkdir(parents=True)
        outboxes = [d.outbox for d in daemons]
        cluster = None
        if options.instances > 1:
            cluster = Cluster(
                server,
                options.lease,
                [_instance_name(n) for n in range(len(daemons))],
                [d.log for d in daemons],
                victim=0,
                retired=len(daemons) - 1,
            )
        victim = daemons[0]
        retired: set[int] = set()  # instances taking no more mail (dead for good)
        draining: set[int] = set()  # ... no more files
        watchers: list[asyncio.Task[None]] = []

        def live(gone: set[int]) -> list[SoakDaemon]:
            return [d for n, d in enumerate(daemons) if n not in gone]

        def mail_route(plan: FaxPlan) -> tuple[int, asyncio.Event]:
            chosen = _spread(plan, live(retired))
            return chosen.smtp_port, chosen.up

        def folder_for(plan: FaxPlan) -> Path:
            return _spread(plan, live(draining | retired)).outbox

        try:
            await asyncio.gather(*(daemon.start() for daemon in daemons))
            store = victim.store()
            start = time.monotonic()
            async with fault_weather(sandbox, options.seed) as weather:
                mail = [p for p in plans if p.intake == "mail"]
                files = [p for p in plans if p.intake == "folder"]

                async def progress() -> float:
                    """Faxes handed over and jobs ended, against twice the faxes: kills
                    fall in the intake, in the sending and in the tail of retries."""
                    handed = ledger.answered() + _files_taken(ledger, outboxes)
                    ended = await asyncio.to_thread(victim.ended_jobs)
                    return (handed + ended) / (2 * len(plans))

                def killed(daemon: SoakDaemon, kill: Kill) -> None:
                    if cluster is not None:
                        watch = _watch_takeover(store_url, daemon.name, kill, cluster)
                        watchers.append(asyncio.create_task(watch))

                tasks = [
                    send_mail(mail, offsets, ledger, mail_route, start=start),
                    drop_files(files, offsets, ledger, folder_for, start=start),
                    _kill_in_turn(victim, triggers, progress, killed),
                ]
                if cluster is not None:
                    last = len(daemons) - 1
                    tasks.append(
                        _kill_for_good(daemons[last], last, retired, draining, progress, killed)
                    )
                await asyncio.gather(*tasks)
                if cluster is not None and daemons[-1].kills:
                    cluster.retired_at = daemons[-1].kills[-1].at
                    cluster.retired_pid = daemons[-1].kills[-1].pid
            settle_began = time.monotonic()
            settled = await _settle(daemons, store, ledger, options.settle)
            settling = time.monotonic() - settle_began
            stop_codes = [await d.stop() for n, d in enumerate(daemons) if n not in retired]
            stop_code = next((code for code in stop_codes if code), 0)
            await asyncio.gather(*watchers)
            if cluster is not None:
                cluster.count_sends()
            seen = SandboxView.of(sandbox)
            evidence = await asyncio.to_thread(
                gather,
                store,
                [d.state_dir / "maildir" for d in daemons],
                outboxes,
                seen,
                ledger,
            )
        finally:
            for watcher in watchers:
                watcher.cancel()
            for daemon in daemons:
                if daemon.pid is not None:
                    await daemon.stop()
            leftovers = [await daemon.orphans_ended() for daemon in daemons]
            for daemon in daemons:
                daemon.close()
        orphans = sum(n for n, _ in leftovers)
        left_running = sum(n for _, n in leftovers)
        wall = time.monotonic() - began
        kills = [kill for daemon in daemons for kill in daemon.kills]
        killed_at = {kill.pid: kill.at for kill in kills}
        found = audit(evidence, ledger, timings.busy_retries, timings.no_answer_retries, killed_at)
        return Run(
            options,
            timings,
            found,
            evidence,
            sorted(kills, key=lambda kill: kill.at),
            [crash for daemon in daemons for crash in daemon.crashes],
            orphans,
            left_running,
            requests,
            weather,
            stop_code,
            settled,
            wall,
            settling,
            victim.log,
            cluster,
        )


def _instance_name(n: int) -> str:
    return f"instance{n + 1}"


def _daemons(
    options: Options,
    root: Path,
    sandbox: Sandbox,
    timings: Timings,
    ports: list[int],
    began: float,
    store_url: str,
) -> list[SoakDaemon]:
    """One daemon in `root` (its state, its outbox); or instances in folders of their own,
    each with its own state directory, SMTP port and hot folder, on one database."""
    if options.instances == 1:
        return [
            SoakDaemon(
                root,
                sandbox,
                root / "outbox",
                timings,
                http_port=ports[0],
                began=began,
                callbacks=options.callbacks,
            )
        ]
    return [
        SoakDaemon(
            root,
            sandbox,
            root / _instance_name(n) / "outbox",
            timings,
            http_port=port,
            began=began,
            callbacks=options.callbacks,
            name=_instance_name(n),
            store_url=store_url,
            public_url=f"http://127.0.0.1:{ports[0]}",
            extra_env={"FAXGATE_STORE__LEASE": options.lease},
        )
        for n, port in enumerate(ports)
    ]


def _spread(plan: FaxPlan, live: Sequence[SoakDaemon]) -> SoakDaemon:
    """The instance a fax goes to: in turn over those taking work."""
    return live[plan.index % len(live)]


def _files_taken(ledger: Ledger, outboxes: Sequence[Path]) -> int:
    dropped = sum(1 for c in ledger.of_intake("folder") if c.state == "dropped")
    return dropped - sum(len(left_in(outbox)) for outbox in outboxes)


async def _kill_for_good(
    daemon: SoakDaemon,
    index: int,
    retired: set[int],
    draining: set[int],
    progress: Callable[[], Awaitable[float]],
    killed: Callable[[SoakDaemon, Kill], None],
) -> None:
    """Half-way through, one instance dies for good. Its hot folder is its own (until
    folders are shared, a file it took but had not queued would wait for its return), so
    it gets no more files first and dies once it has taken its last one; mail goes to the
    others from the kill on, as to a second MX host."""
    with contextlib.suppress(AssertionError):
        await wait_for(lambda: _at_least(progress, RETIRE_AT), timeout=KILL_WAIT, interval=0.1)
    draining.add(index)
    claims = daemon.state_dir / "spool" / CLAIMS_DIR

    def drained() -> bool:
        return not left_in(daemon.outbox) and not any(claims.glob("*.claim.json"))

    try:
        await wait_for(lambda: asyncio.to_thread(drained), timeout=DRAIN_WAIT, interval=0.1)
    except AssertionError:
        print(f"  {daemon.name}'s folder not empty after {DRAIN_WAIT:.0f}s", file=sys.stderr)
    retired.add(index)
    kill = await daemon.kill()
    if kill is None:
        print(f"  {daemon.name} had exited by itself: {daemon.crashes[-1]}", file=sys.stderr)
        return
    print(f"  {daemon.name} killed for good at {kill.at:.1f}s (pid {kill.pid})", file=sys.stderr)
    killed(daemon, kill)


async def _at_least(progress: Callable[[], Awaitable[float]], target: float) -> bool:
    return await progress() >= target


async def _watch_takeover(url: str, name: str, kill: Kill, cluster: Cluster) -> None:
    """Time from `kill` until the dead process holds no work another could do: faxes
    claimed or in `submitting`, notifications not delivered (its leases ran out and the
    others took the work, or it was done)."""
    owner = f"{socket.gethostname()}:{kill.pid}:%"
    killed_at = time.monotonic()
    held = await asyncio.to_thread(held_by, url, owner)
    seconds: float | None = None
    try:
        await wait_for(
            lambda: asyncio.to_thread(lambda: held_by(url, owner) == 0),
            timeout=TAKEOVER_WAIT,
            interval=0.05,
        )
        seconds = time.monotonic() - killed_at
    except AssertionError:
        pass
    cluster.takeovers.append(Takeover(name, kill.pid, kill.at, held, seconds))


async def _kill_in_turn(
    daemon: SoakDaemon,
    triggers: Sequence[KillTrigger],
    progress: Callable[[], Awaitable[float]],
    killed: Callable[[SoakDaemon, Kill], None],
) -> None:
    """Each kill at its moment of the run's progress (at least a little after the last
    restart, so the daemon gets some work done between kills); then start again."""
    floor = 0.0
    for trigger in triggers:
        target = max(trigger.progress, floor + 0.03)

        async def reached(target: float = target) -> bool:
            return await progress() >= target

        try:
            await wait_for(reached, timeout=KILL_WAIT, interval=0.1)
        except AssertionError:
            print(f"  progress stalled below {target:.2f}; killing anyway", file=sys.stderr)
        await asyncio.sleep(trigger.jitter)  # the random moment itself
        kill = await daemon.kill()
        if kill is None:
            print(f"  the daemon had exited by itself: {daemon.crashes[-1]}", file=sys.stderr)
        else:
            print(
                f"  kill {len(daemon.kills)} at {kill.at:.1f}s (pid {kill.pid}):"
                f" {states_line(kill.jobs)}",
                file=sys.stderr,
            )
            killed(daemon, kill)
        await daemon.start()
        floor = await progress()


async def _settle(
    daemons: Sequence[SoakDaemon], store: Store, ledger: Ledger, deadline: float
) -> bool:
    """Until nothing is left to do: no file waiting or half claimed, no job unsettled, no
    report undelivered, a job for every accepted copy. False when the deadline passed."""
    accepted = ledger.answered()
    outboxes = [daemon.outbox for daemon in daemons]
    claims = [daemon.state_dir / "spool" / CLAIMS_DIR for daemon in daemons]

    def done() -> bool:
        if any(left_in(outbox) for outbox in outboxes):
            return False
        if any(any(folder.glob("*.claim.json")) for folder in claims):
            return False
        if store.count_in_states(UNSETTLED) or store.pending_notifications(FAR_FUTURE, 1):
            return False
        return store.count_in_states(JobState) >= accepted + _files_taken(ledger, outboxes)

    try:
        await wait_for(lambda: asyncio.to_thread(done), timeout=deadline, interval=0.5)
    except AssertionError:
        return False
    return True


# ---------------------------------------------------------------------------- figures


def figures(run: Run) -> list[list[object]]:
    found, evidence = run.audit, run.evidence
    planned = _planned(run.options)
    accepted = sum(found.accepted.values())
    per_fax = accepted or 1
    endpoints = run.requests.endpoints
    statuses = run.requests.statuses
    fives = sum(n for status, n in statuses.items() if status.startswith("5"))
    uncertain_sent = sum(1 for _, sent in found.uncertain if sent)
    replies_wanted = sum(1 for r in evidence.jobs if r.job.intake is Intake.SMTP and r.job.reply_to)
    results_wanted = sum(1 for r in evidence.jobs if r.job.intake is Intake.FOLDER)
    callbacks = found.callbacks
    kills = ", ".join(f"{k.at:.0f}" for k in run.kills)
    ended = sum(found.outcomes[state] for state in ("sent", "presumed_sent", "failed", "uncertain"))
    not_ended = len(evidence.jobs) - ended
    count = len(found.problems)
    promises = "kept" if run.kept else f"BROKEN ({count} problem{'' if count == 1 else 's'})"
    if not run.settled:
        promises += "; not settled by the deadline"
    if run.stop_code:
        promises += f"; SIGTERM exit code {run.stop_code}"
    if run.crashes:
        promises += f"; the daemon exited by itself: {', '.join(run.crashes)}"
    return [
        [
            "faxes planned",
            f"{run.options.faxes} (mail {planned['mail']}, folder {planned['folder']})",
        ],
        [
            "accepted by intake",
            f"{accepted}: mail {found.accepted['mail']} (250 answers),"
            f" folder {found.accepted['folder']} (files taken)",
        ],
        ["not accepted", _counts(found.not_accepted) or "0"],
        [
            "SMTP tries without an answer",
            f"{found.unanswered_tries} (stored anyway: {found.stored_unanswered})",
        ],
        ["jobs in the store", len(evidence.jobs)],
        [
            "outcomes",
            f"sent {found.outcomes['sent']}, presumed sent {found.outcomes['presumed_sent']},"
            f" failed {found.outcomes['failed']}, uncertain {found.outcomes['uncertain']},"
            f" not ended {not_ended}",
        ],
        [
            "notifications",
            f"replies {found.replies} of {replies_wanted}, result files {found.results}"
            f" of {results_wanted}",
        ],
        ["sent twice by accident", found.sent_twice],
        ["numbers called again (busy, no answer)", found.retry_duplicates],
        ["uncertain jobs", f"{len(found.uncertain)} (of which at the provider: {uncertain_sent})"],
        ["faxes at the sandbox", found.transmissions],
        ["kills (SIGKILL) at s", f"{len(run.kills)}: {kills}"],
        ["readers outliving a kill", run.orphans],
        ["processes left after SIGTERM", run.left_running],
        ["daemon exits nobody asked for", len(run.crashes)],
        [
            "API requests per accepted fax",
            f"{run.requests.total / per_fax:.2f} (send {endpoints['send'] / per_fax:.2f},"
            f" get {endpoints['get'] / per_fax:.2f}, list {endpoints['list'] / per_fax:.2f},"
            f" other {endpoints['other'] / per_fax:.2f})",
        ],
        ["answers 5xx / 429", f"{fives} / {statuses['429']}"],
        [
            "callbacks posted",
            f"{sum(callbacks.values())} ({_counts(callbacks) or '-'}); not answered 200:"
            f" {found.callbacks_unanswered}",
        ],
        ["fault weather", _counts(run.weather.changes) or "-"],
        *cluster_rows(run),
        ["wall time", f"{run.wall:.0f} s (settling {run.settling:.0f} s)"],
        ["promises", promises],
    ]


def cluster_rows(run: Run) -> list[list[object]]:
    """Who did what, when the instances share a store; nothing for one daemon."""
    cluster = run.cluster
    if cluster is None:
        return []
    victim, retired = cluster.names[cluster.victim], cluster.names[cluster.retired]
    again = sum(1 for kill in run.kills if kill.pid != cluster.retired_pid)
    fate = f"{retired} killed for good at {cluster.retired_at:.0f} s" if cluster.retired_at else ""
    sends = ", ".join(f"{name} {n}" for name, n in zip(cluster.names, cluster.sends, strict=True))
    takeovers = [t for t in cluster.takeovers if t.held]
    timed = sorted(t.seconds for t in takeovers if t.seconds is not None)
    taken = (
        f"{len(timed)} of {len(takeovers)} kills that left work: {timed[0]:.1f} to"
        f" {timed[-1]:.1f} s (lease {cluster.lease})"
        if timed
        else f"no kill left work (lease {cluster.lease})"
    )
    return [
        [
            "instances",
            f"{len(cluster.names)} on PostgreSQL {cluster.server}; callbacks to {victim};"
            f" {victim} killed {again} times; {fate}",
        ],
        ["hand-overs to the provider by instance", f"{sends} (each try, from the logs)"],
        ["replies written again by another", run.evidence.reply_repeats],
        ["kill to its work taken over", taken],
    ]


def _planned(options: Options) -> dict[str, int]:
    planned = plan_faxes(options.faxes, options.seed)
    return {
        "mail": sum(p.intake == "mail" for p in planned),
        "folder": sum(p.intake == "folder" for p in planned),
    }


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()) if n)


def kill_rows(run: Run) -> list[list[object]]:
    if run.cluster is None:
        return [
            [n, f"{kill.at:.1f}", states_line(kill.jobs), len(kill.orphans)]
            for n, kill in enumerate(run.kills, start=1)
        ]
    takeovers = {t.pid: t for t in run.cluster.takeovers}
    rows: list[list[object]] = []
    for n, kill in enumerate(run.kills, start=1):
        taken = takeovers.get(kill.pid)
        after = "-" if taken is None or taken.seconds is None else f"{taken.seconds:.1f}"
        name = taken.instance if taken else "?"
        held = taken.held if taken else "?"
        rows.append(
            [n, name, f"{kill.at:.1f}", states_line(kill.jobs), len(kill.orphans), held, after]
        )
    return rows


def kill_headers(run: Run) -> list[str]:
    headers = ["kill", "at s", "jobs just before", "readers left"]
    if run.cluster is not None:
        headers = ["kill", "instance", "at s", "jobs just before", "readers left"]
        headers += ["work held", "taken over after s"]
    return headers


def two_columns(rows: Sequence[Sequence[object]]) -> str:
    width = max(len(str(row[0])) for row in rows)
    return "\n".join(f"{str(label).ljust(width)}  {value}" for label, value in rows)


def report(run: Run) -> str:
    parts = [
        two_columns(figures(run)),
        "",
        table(KIND_HEADERS, kind_rows(run.audit)),
        "",
        table(kill_headers(run), kill_rows(run)),
    ]
    return "\n".join(parts)


def problems_text(run: Run) -> str:
    if not run.audit.problems:
        return ""
    records = records_by_job(run.evidence)
    log_text = run.log.read_text(errors="replace").splitlines() if run.log.exists() else []
    by_promise: dict[str, list[Any]] = {}
    for problem in run.audit.problems:
        by_promise.setdefault(problem.promise, []).append(problem)
    lines = ["PROMISES BROKEN:"]
    for promise, problems in by_promise.items():
        lines.append(f"  {promise}: {len(problems)}")
        for problem in problems[:EXAMPLES]:
            lines.append(f"  - {problem.detail}")
            if problem.job is not None:
                about = [line for line in log_text if problem.job.id in line][:15]
                lines.extend(job_story(records.get(problem.job.id), about))
    lines.append(f"  daemon log: {run.log}")
    return "\n".join(lines)


def uncertain_text(run: Run) -> str:
    """The jobs faxgate marked uncertain (allowed, not a broken promise): why, and how
    many times the sandbox got their document."""
    if not run.audit.uncertain:
        return ""
    records = records_by_job(run.evidence)
    lines = ["Uncertain jobs (faxgate could not tell whether the provider took them):"]
    for job_id, sent in run.audit.uncertain:
        record = records[job_id]
        why = next(
            (e.detail for e in reversed(record.events) if e.to_state is JobState.UNCERTAIN), ""
        )
        tags = ", ".join(record.tags)
        lines.append(f"  - job {job_id} ({tags}, to {record.job.to_number}): at the sandbox")
        lines.append(f"    {sent} time(s); {why}")
    return "\n".join(lines)


def as_json(run: Run) -> dict[str, Any]:
    return {
        "kept": run.kept,
        "figures": {str(row[0]): str(row[1]) for row in figures(run)},
        "problems": [
            {"promise": p.promise, "detail": p.detail, "job": p.job.id if p.job else None}
            for p in run.audit.problems
        ],
    }


# ---------------------------------------------------------------------------- README


def readme_section(run: Run) -> str:
    if run.cluster is not None:
        return _cluster_section(run)
    about = (
        "`.venv/bin/python -m bench.bench_soak [--faxes 500] [--kills 5] [--seed 1]"
        " [--write-readme]`, a minute or two. Faxes by mail (SMTP, 4 connections) and by"
        " hot folder (files renamed in, in bursts) at once, each with a document of its own,"
        " most to a number of their own whose last digits choose the sandbox's outcome. The"
        " sandbox runs in the run's process, so it outlives the daemon: it answers a share"
        " of requests with 5xx, drops connections after the upload, posts every callback"
        " twice, shuffled, with a late copy, and has slow spells (some longer than the"
        " client's timeout) and 429 storms. `faxgate run` is killed with SIGKILL at seeded"
        " moments and started again; the mail client sends a message again (as a new one)"
        " when it got no answer. Then the run waits for everything to settle, stops the"
        " daemon with SIGTERM and checks every promise (the module's docstring lists them):"
        " exit status 1 and the broken ones printed, with each job's events and log lines."
    )
    return _section(run, SECTION, about, NOTES)


def _broken_lines(run: Run) -> list[str]:
    if not run.audit.problems:
        return []
    lines = ["Broken in this run:", ""]
    for problem in run.audit.problems[:EXAMPLES]:
        text = f"- {problem.promise}: {problem.detail}"
        lines.append(textwrap.fill(text, 88, subsequent_indent="  "))
    return [*lines, ""]


# What the runs found, kept with the figures (see the module's docstring for the checks).
NOTES = [
    "About twenty runs the same day (seeds 1 to 11, 5 to 10 kills, sandbox speed 0.005",
    "to 0.05, a minute or so each) kept every promise on intake, outcomes and sends:",
    "nothing accepted was lost or taken twice, no job was stuck, no fax went out more often",
    "than its job called, every outcome was the number's rule. What they found:",
    "",
    "- Reply mails doubled by a kill, in about one run in three (1 to 3 of some 250): the",
    "  notifier writes the mail, then marks the outbox row delivered; a kill in between",
    "  leaves the row undelivered and the next start writes the reply again, under a new",
    "  file name and Message-ID (notifier.py: delivery at least once). The run names the",
    "  processes that wrote each copy. Result files in the hot folder were never doubled:",
    "  their placement is idempotent.",
    "- Uncertain jobs, in 2 runs (1 and 3 jobs, speed 0.05): two faxes to one busy",
    "  number; the other fax's earlier busy calls, whose GUIDs stay only in its events once",
    "  it is queued again, counted as candidates when a 502 answer was reconciled. The",
    "  same gap can make a job adopt another job's earlier call as its own.",
    "- Each kill leaves the killed daemon's message readers running (forkserver, resource",
    "  tracker, two workers); the run ends them. Under systemd the unit's control group",
    "  goes with the daemon.",
    "- A 429, a success and another 429 in one dispatch cycle log `submitting failed ...",
    "  ValueError('failures counts from 1')`; the job is queued again all the same.",
    "",
    "Quick mode, for a test: `.venv/bin/python -m bench.bench_soak --quick` (60 faxes, 2",
    "kills, about 25 s; exit status 0 when every promise was kept).",
]


def _cluster_section(run: Run) -> str:
    about = (
        "`.venv/bin/python -m bench.bench_soak --instances 2 [--faxes 500] [--kills 5]"
        " [--seed 1] [--lease 5s] [--write-readme]`, two minutes or so. The soak above, on"
        " several `faxgate run` instances acting as one gateway on one PostgreSQL database"
        " (a throwaway cluster started as the tests start one), each with its own state"
        " directory, SMTP port and hot folder: mail and files spread over them in turn,"
        " callbacks to the first (as a load balancer would pick one), every `[store] lease`"
        " 5 s. The first instance is SIGKILLed at the seeded moments and started again each"
        " time; the last is killed for good half-way (it first stops getting files and"
        " takes its folder's last ones: a hot folder is not shared yet, and a file a dead"
        " instance had taken but not queued would wait for it), and its mail goes to the"
        " others from then on, as to a second MX host. The audit reads the shared database"
        " and every instance's Maildir and folder, and checks every promise as for one"
        " daemon. Each kill's takeover is timed: from the SIGKILL until the dead process"
        " holds no work another could do (faxes claimed or in `submitting`, notifications"
        " owed)."
    )
    return _section(run, CLUSTER_SECTION, about, CLUSTER_NOTES)


def _section(run: Run, title: str, about: str, notes: list[str]) -> str:
    """A README section: its title, what the run does, the command and its figures, what
    this run broke and what the runs found."""
    return "\n".join(
        [
            title,
            "",
            textwrap.fill(about, 88, break_on_hyphens=False),
            "",
            textwrap.fill(
                f"`{run.options.command}`, {machine()},"
                f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, sandbox speed {run.options.speed:g}:",
                88,
                break_on_hyphens=False,
            ),
            "",
            "```",
            report(run),
            "```",
            "",
            *_broken_lines(run),
            *notes,
            "",
        ]
    )


# What the runs on several instances found, kept with their figures.
CLUSTER_NOTES = [
    "Replies are counted as for one daemon: a reply is known by its Message-ID (made from",
    "the outbox row; the Maildir file is named after it), and one daemon writing it again",
    "finds its copy. Across instances each has its own Maildir, so a reply written by an",
    "instance killed before it marked the row delivered, and written again by another,",
    "would be two files with one Message-ID (which mail programs fold into one): they",
    'count as one reply, and apart as "replies written again by another". Two replies',
    "with different Message-IDs would break the promise.",
    "",
    "The first runs found one fault, fixed since (tests/notify/test_folder_result.py): a",
    "hot-folder drop's result was placed twice (`NAME (2).pdf.result.json` beside",
    "`NAME.pdf.result.json`) when the instance that took the drop placed it and died",
    "before marking its report delivered, and another delivered the report again: the",
    "placement record and the spooled files were looked for in the deliverer's own spool.",
    "They are now looked for where the drop's documents are, in the taker's.",
    "",
    "Three more runs the same day, 500 faxes each: seed 2 (2 instances, 6 kills), seed 3",
    "(3 instances, callbacks to the first, 5 kills of the first and the third killed for",
    "good) and seed 4 (2 instances, 5 kills) kept every promise; 0 sent twice, 0 replies",
    "written again; each kill's work taken over 3.8 to 7.7 s after it (the lease's",
    "remainder: claims on queued faxes are not renewed, so one made a second before the",
    "death runs out a second early). Seed 2 left 2 jobs uncertain, allowed and counted:",
    "two faxes to one number whose answers were lost; the provider's records show two",
    "faxes to it from that time that cannot be told apart, so neither is sent again",
    "blindly (as in the soak of one daemon); each reached the sandbox once.",
    "",
    "Quick mode, for a test: `.venv/bin/python -m bench.bench_soak --instances 2 --quick`",
    "(60 faxes, the first instance killed twice, the second for good; about 30 s;",
    "tests/reliability/test_soak_cluster_quick.py).",
]


# ---------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--faxes", type=int, default=500)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=10.0, help="faxes handed over per second")
    parser.add_argument(
        "--speed", type=float, default=0.02, help="the sandbox's speed (0.02: a fax in 1.4 s)"
    )
    parser.add_argument("--settle", type=float, default=240.0, help="seconds to wait at the end")
    parser.add_argument("--quick", action="store_true", help="60 faxes, 2 kills, 12 a second")
    parser.add_argument("--keep", type=Path, help="keep the run's files in this new directory")
    parser.add_argument("--json", type=Path, help="also write the figures and problems here")
    parser.add_argument(
        "--write-readme", action="store_true", help="put the figures into bench/README.md"
    )
    parser.add_argument(
        "--no-callbacks",
        action="store_true",
        help="polling only: no callback URL, so each sent fax vanishes unconfirmed",
    )
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="2 and more: that many daemons sharing a throwaway PostgreSQL cluster",
    )
    parser.add_argument("--lease", default=LEASE, help="[store] lease of the instances")
    args = parser.parse_args(argv)
    if args.quick:
        args.faxes, args.kills, args.rate, args.settle = 60, 2, 12.0, 90.0
    if args.faxes < 1 or args.kills < 0 or args.rate <= 0 or args.speed <= 0:
        parser.error("--faxes, --rate and --speed must be positive, --kills not negative")
    if args.instances < 1:
        parser.error("--instances must be at least 1")
    options = Options(
        args.faxes,
        args.kills,
        args.seed,
        args.rate,
        args.speed,
        args.settle,
        args.keep,
        callbacks=not args.no_callbacks,
        instances=args.instances,
        lease=args.lease,
    )
    return options, args


@contextlib.contextmanager
def shared_store(options: Options) -> Iterator[tuple[str, str]]:
    """For several instances, a throwaway PostgreSQL cluster (as the tests start one) and
    a database in it: its URL over the unix socket and the server's version; for one
    daemon, nothing (its SQLite file)."""
    if options.instances == 1:
        yield "", ""
        return
    with running_postgres() as server:
        name = f"soak_{os.getpid()}"
        server.sql(f"CREATE DATABASE {name} TEMPLATE template0")
        yield server.socket_url(name), server.sql("SHOW server_version").split()[0]


def main(argv: list[str] | None = None) -> int:
    options, args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    kills = f"{options.kills} kill{'' if options.kills == 1 else 's'}"
    instances = f", {options.instances} instances" if options.instances > 1 else ""
    banner(f"Soak: {options.faxes} faxes, {kills}, seed {options.seed}{instances}")
    with shared_store(options) as (url, server):
        if options.keep is not None:
            options.keep.mkdir(parents=True)
            run = asyncio.run(soak(options, options.keep, url, server))
        else:
            with tempfile.TemporaryDirectory(prefix="faxgate-soak-") as temp:
                run = asyncio.run(soak(options, Path(temp), url, server))
                if not run.kept:
                    kept_at = Path(tempfile.mkdtemp(prefix="faxgate-soak-failed-"))
                    shutil.copytree(temp, kept_at, dirs_exist_ok=True)
                    run.log = kept_at / run.log.relative_to(temp)
    print(report(run))
    for notes in (uncertain_text(run), problems_text(run)):
        if notes:
            print()
            print(notes)
    if args.json is not None:
        args.json.write_text(json.dumps(as_json(run), indent=2) + "\n")
    if args.write_readme:
        section = readme_section(run)
        write_readme_section(section, after=SECTION if run.cluster is not None else None)
    return 0 if run.kept else 1


if __name__ == "__main__":
    sys.exit(main())
