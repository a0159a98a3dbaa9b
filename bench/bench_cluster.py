"""Two instances on one PostgreSQL store against one, in the same run; and the failover.

Run from the repository: `.venv/bin/python bench/bench_cluster.py [--faxes 400]
[--rounds 3] [--speed 0.02] [--failover-leases 2m,5s]`, some six minutes (two of them the
default lease's failover).

PostgreSQL is a throwaway cluster started as the tests start one (tests/postgres.py), on
the same machine, then restarted with fsync, synchronous_commit and full_page_writes on
(PostgreSQL's defaults; the tests turn them off): its commits as durable as SQLite's.

Throughput: the same faxes (one page each, a number of their own, all delivered) by mail
to `faxgate run` processes on loopback (tests/daemon.py), 8 SMTP connections in all,
message i to instance i mod n, as fast as the daemons answer. Each case has a sandbox of
its own in this process (no faults, `--speed`: 0.02 is a fax in about 1.4 s), which posts
its callbacks to the first instance (a load balancer picks one) and refuses a 201st fax
pending or transmitting, as the provider does. The cases:

- one instance on SQLite (the baseline: faxgate as one machine runs it);
- one instance on PostgreSQL;
- two instances on the same PostgreSQL, the mail spread over them.

Figures: seconds from the first message to the last 250 and to the last fax `sent`;
faxes sent per second; the most faxes at the provider at once (the store's submitting,
submitted and transmitting, sampled every 0.1 s), against the provider's 200; requests
to the provider per fax (from its access log); CPU per fax, from the first message to
the last fax sent, of every instance's processes and of PostgreSQL's (from /proc); the
ceiling the provider sets: 200 in flight over the median time a fax spends there
(submitted to sent). `--rounds` runs every case once a round, each round in another
order, and the medians are taken over the rounds.

Failover: two instances on PostgreSQL, each send answered `--send-delay` seconds after the
fax was taken, so an instance holds faxes in `submitting`; 40 faxes by mail to each;
once the second holds faxes being sent it is SIGKILLed, and the time runs until it holds
no work another could do (faxes claimed or in `submitting`, notifications owed): its
leases ran out and the first took its work over. Once per lease in `--failover-leases`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosmtplib
from _common import banner, one_page_pdf, table
from soak_daemon import descendants
from soak_sandbox import soak_sandbox

from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import FaultSettings, Sandbox, SandboxSettings
from faxgate.store import Store
from tests.conftest import sandbox_settings, wait_for
from tests.daemon import DaemonProcess, sandbox_posts_to
from tests.postgres import PostgresServer, held_by, rows, running_postgres

AT_PROVIDER = (JobState.SUBMITTING, JobState.SUBMITTED, JobState.TRANSMITTING)
CONNECTIONS = 8
PROVIDER_LIMIT = 200
FAILOVER_FAXES = 40  # by mail to each instance


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    instances: int
    postgres: bool


CASES = (
    Case("1 instance, SQLite (baseline)", 1, postgres=False),
    Case("1 instance, PostgreSQL", 1, postgres=True),
    Case("2 instances, one PostgreSQL", 2, postgres=True),
)


@dataclass(frozen=True, slots=True)
class Figures:
    case: Case
    accepted_s: float
    sent_s: float
    most_in_flight: int
    requests: int
    sends: int
    at_provider_s: float  # median, submitted to sent
    by_instance: list[int]
    faxes: int
    faxgate_cpu: float  # seconds, every instance's processes
    postgres_cpu: float  # seconds, the PostgreSQL cluster's (0 on SQLite)

    @property
    def rate(self) -> float:
        return self.faxes / self.sent_s

    @property
    def ceiling(self) -> float:
        return PROVIDER_LIMIT / self.at_provider_s if self.at_provider_s else 0.0


@dataclass(frozen=True, slots=True)
class Failover:
    lease: str
    held: int
    seconds: float


# ---------------------------------------------------------------------------- CPU


def _ticks(pid: int, *, waited: bool) -> int:
    """A process's CPU time in clock ticks (with `waited`: its children's it waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # After "(name)": state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if waited else 0)


def tree_cpu(pid: int) -> float:
    """Seconds of CPU of a process, its live descendants and the children it waited for."""
    ticks = _ticks(pid, waited=True) + sum(_ticks(p, waited=False) for p in descendants(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def postmaster(server: PostgresServer) -> int:
    return int((server.datadir / "postmaster.pid").read_text().split()[0])


# ---------------------------------------------------------------------------- daemons


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def instances(
    root: Path, sandbox: Sandbox, count: int, store_url: str, env: dict[str, str]
) -> AsyncIterator[list[tuple[DaemonProcess, int]]]:
    """`count` daemons (and their SMTP ports) on the sandbox, callbacks to the first;
    stopped with SIGTERM at the end."""
    http = [_port() for _ in range(count)]
    smtp = [_port() for _ in range(count)]
    public = f"http://127.0.0.1:{http[0]}"
    daemons = []
    for n in range(count):
        extra = {
            "FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp[n]}",
            "FAXGATE_HTTP__PUBLIC_URL": public,
            "FAXGATE_LOG_LEVEL": "info",
            "FAXGATE_PROVIDER__CALLBACK_RETRY_SCALE": str(sandbox.settings.speed),
            **env,
        }
        if store_url:
            extra["FAXGATE_STORE__URL"] = store_url
        state_dir = root / f"instance{n + 1}" / "state"
        state_dir.parent.mkdir(parents=True)
        daemons.append(DaemonProcess(state_dir, sandbox, http[n], extra))
    try:
        await asyncio.gather(*(daemon.start() for daemon in daemons))
        yield list(zip(daemons, smtp, strict=True))
    finally:
        for daemon in daemons:
            if daemon.process is not None and daemon.process.returncode is None:
                await daemon.stop()


def message(index: int, pdf: bytes) -> tuple[str, bytes]:
    number = f"1415{555 + index // 9000:03d}{1000 + index % 9000:04d}"
    mail = EmailMessage()
    mail["From"] = "Bench <bench@example.com>"
    mail["To"] = f"{number}@fax.local"
    mail["Subject"] = f"Bench fax {index}"
    mail["Message-ID"] = f"<bench-{index}@cluster.faxgate.invalid>"
    mail.set_content("Please fax the letter attached.\n")
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="letter.pdf")
    return number, mail.as_bytes()


async def send_all(count: int, ports: Sequence[int], first: int = 0) -> None:
    """Messages first..first+count-1, message i to ports[i mod n], over CONNECTIONS
    connections in all (each instance's share of them), each answered 250."""
    pdf = one_page_pdf()
    queues: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in ports]
    for index in range(first, first + count):
        queues[index % len(ports)].put_nowait(index)

    async def connection(port: int, queue: asyncio.Queue[int]) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as client:
            while not queue.empty():
                number, data = message(queue.get_nowait(), pdf)
                await client.sendmail("bench@example.com", [f"{number}@fax.local"], data)

    await asyncio.gather(
        *(
            connection(port, queue)
            for port, queue in zip(ports, queues, strict=True)
            for _ in range(CONNECTIONS // len(ports))
        )
    )


# ---------------------------------------------------------------------------- throughput


@contextlib.asynccontextmanager
async def cluster(
    root: Path, sandbox: Sandbox, count: int, url: str, env: dict[str, str]
) -> AsyncIterator[tuple[list[tuple[DaemonProcess, int]], Store]]:
    """The instances (SQLite when `url` is empty), the sandbox's callbacks to the first,
    and the run's own connection to their store."""
    async with instances(root, sandbox, count, url, env) as daemons:
        first = daemons[0][0]
        await sandbox_posts_to(sandbox, first.http_port)
        store = Store.open_configured(url, "", first.state_dir / "faxgate.sqlite3")
        try:
            yield daemons, store
        finally:
            store.close()


async def throughput(
    case: Case, root: Path, faxes: int, speed: float, url: str, server: PostgresServer
) -> Figures:
    await asyncio.to_thread(root.mkdir, parents=True)
    async with soak_sandbox(root / "sandbox", speed=speed, seed=1, callback_url=None) as (
        sandbox,
        requests,
    ):
        sandbox.faults = FaultSettings()  # a well-behaved provider
        store_url = url if case.postgres else ""
        async with cluster(root, sandbox, case.instances, store_url, {}) as (daemons, store):
            requests.endpoints.clear()
            requests.statuses.clear()
            pg_before = tree_cpu(postmaster(server))
            pids = [d.process.pid for d, _ in daemons if d.process is not None]
            before = sum(tree_cpu(pid) for pid in pids)  # their start is not the point
            began = time.monotonic()

            async def accepted() -> float:
                await send_all(faxes, [port for _, port in daemons])
                return time.monotonic() - began

            accepted_s, (sent_s, most) = await asyncio.gather(
                accepted(), _all_sent(store, faxes, began, case.name)
            )
            # Read before the stop: the daemons' work on these faxes, and the database's.
            cpu = sum(tree_cpu(pid) for pid in pids) - before
            pg_cpu = tree_cpu(postmaster(server)) - pg_before if case.postgres else 0.0
            jobs = await asyncio.to_thread(store.jobs_in_states, [JobState.SENT])
            at_provider = [
                (job.updated_at - job.submitted_at).total_seconds()
                for job in jobs
                if job.submitted_at is not None
            ]
            by_instance = [
                daemon.log.read_text(errors="replace").count("submitting job=")
                for daemon, _ in daemons
            ]
        return Figures(
            case,
            accepted_s,
            sent_s,
            most,
            requests.total,
            requests.endpoints["send"],
            statistics.median(at_provider) if at_provider else 0.0,
            by_instance,
            faxes,
            cpu,
            pg_cpu,
        )


async def _all_sent(store: Store, faxes: int, began: float, name: str) -> tuple[float, int]:
    """Seconds until every fax is sent, and the most at the provider at once (sampled)."""
    most = 0

    def count() -> tuple[int, int]:
        return store.count_in_states([JobState.SENT]), store.count_in_states(AT_PROVIDER)

    while True:
        sent, out = await asyncio.to_thread(count)
        most = max(most, out)
        if sent >= faxes:
            return time.monotonic() - began, most
        if time.monotonic() - began > 600:
            raise AssertionError(f"{name}: {sent} of {faxes} sent after 600 s")
        await asyncio.sleep(0.1)  # the sampling's pace


# ---------------------------------------------------------------------------- failover


async def failover(root: Path, url: str, lease: str, send_delay: float) -> Failover:
    await asyncio.to_thread(root.mkdir, parents=True)
    async with Sandbox(_sandbox_settings(root / "sandbox")) as sandbox:
        # Each send answered late: an instance holds faxes in `submitting` a while.
        sandbox.faults = FaultSettings(delay=send_delay, delay_only_for_sends=True)
        env = {"FAXGATE_STORE__LEASE": lease}
        async with cluster(root, sandbox, 2, url, env) as (daemons, _):
            victim = daemons[1][0]
            assert victim.process is not None
            owner = f"{socket.gethostname()}:{victim.process.pid}:%"

            async def mail() -> None:
                # The victim's share fails at its death: not the point here.
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await send_all(2 * FAILOVER_FAXES, [port for _, port in daemons])

            async def kill_and_time() -> tuple[int, float]:
                async def sending_faxes() -> bool:
                    return await asyncio.to_thread(_sending, url, owner) > 0

                await wait_for(sending_faxes, timeout=60, what="the victim sending faxes")
                held = await asyncio.to_thread(held_by, url, owner)
                await victim.kill()
                killed = time.monotonic()

                async def taken_over() -> bool:
                    return await asyncio.to_thread(held_by, url, owner) == 0

                await wait_for(taken_over, timeout=900, interval=0.05, what="the takeover")
                return held, time.monotonic() - killed

            _, (held, seconds) = await asyncio.gather(mail(), kill_and_time())
        return Failover(lease, held, seconds)


def _sandbox_settings(state_dir: Path) -> SandboxSettings:
    return sandbox_settings(state_dir, speed=0.02)


def _sending(url: str, owner: str) -> int:
    """The faxes the process `owner` (a LIKE pattern) holds in `submitting`."""
    sql = "SELECT count(*) FROM jobs WHERE lease_owner LIKE %s AND state = 'submitting'"
    [(sending,)] = rows(url, sql, owner)
    return int(sending)


# ---------------------------------------------------------------------------- main


def database(server: PostgresServer, name: str) -> str:
    server.sql(f"CREATE DATABASE {name} TEMPLATE template0")
    return server.socket_url(name)


async def bench(args: argparse.Namespace, server: PostgresServer, root: Path) -> None:
    rounds: list[list[Figures]] = []
    for r in range(args.rounds):
        done: list[tuple[int, Figures]] = []
        # Each round in another order: a busy spell of the machine falls on each case.
        order = list(enumerate(CASES))
        order = order[r % len(order) :] + order[: r % len(order)]
        for n, case in order:
            url = database(server, f"bench_{os.getpid()}_{r}_{n}") if case.postgres else ""
            print(f"  round {r + 1}: {case.name} ...", file=sys.stderr, flush=True)
            where = root / f"round{r}" / f"case{n}"
            done.append((n, await throughput(case, where, args.faxes, args.speed, url, server)))
        rounds.append([f for _, f in sorted(done, key=lambda pair: pair[0])])
    print(
        f"{args.faxes} faxes by mail ({CONNECTIONS} SMTP connections),"
        f" sandbox speed {args.speed:g}, {args.rounds} round(s); each row one case of one round"
    )
    print()
    rows = []
    for r, figures in enumerate(rounds, start=1):
        baseline = figures[0]
        for f in figures:
            rows.append(
                [
                    r,
                    f.case.name,
                    f"{f.accepted_s:.1f}",
                    f"{f.sent_s:.1f}",
                    f"{f.rate:.1f}",
                    f"{f.rate / baseline.rate:.2f}",
                    f"{f.most_in_flight} of {PROVIDER_LIMIT}",
                    f"{f.requests / f.faxes:.2f} ({f.sends / f.faxes:.2f})",
                    f"{1000 * f.faxgate_cpu / f.faxes:.1f} / {1000 * f.postgres_cpu / f.faxes:.1f}",
                    ", ".join(str(n) for n in f.by_instance),
                ]
            )
    headers = [
        "round",
        "case",
        "all 250 s",
        "all sent s",
        "faxes/s",
        "x baseline",
        "most in flight",
        "requests/fax (sends)",
        "CPU ms/fax faxgate / PG",
        "sends by instance",
    ]
    print(table(headers, rows))
    print()
    medians = []
    for n, case in enumerate(CASES):
        rates = [figures[n].rate for figures in rounds]
        ratios = [figures[n].rate / figures[0].rate for figures in rounds]
        cpu = [figures[n].faxgate_cpu / figures[n].faxes for figures in rounds]
        medians.append(
            [
                case.name,
                f"{statistics.median(rates):.1f}",
                f"{statistics.median(ratios):.2f}",
                f"{1000 * statistics.median(cpu):.1f}",
            ]
        )
    print(table(["case", "median faxes/s", "median x baseline", "faxgate CPU ms/fax"], medians))
    print()
    at_provider = statistics.median(f.at_provider_s for figures in rounds for f in figures)
    print(
        f"provider ceiling: {PROVIDER_LIMIT} in flight / {at_provider:.2f} s a fax at the"
        f" provider (median, submitted to sent) = {PROVIDER_LIMIT / at_provider:.0f} faxes/s"
    )
    print()
    failovers = []
    for n, lease in enumerate(args.failover_leases.split(",")):
        url = database(server, f"failover_{os.getpid()}_{n}")
        print(f"  failover, lease {lease} ...", file=sys.stderr, flush=True)
        result = await failover(root / f"failover{n}", url, lease, args.send_delay)
        failovers.append([lease, result.held, f"{result.seconds:.2f}"])
    print(table(["lease", "work held at the kill", "SIGKILL to its work taken over, s"], failovers))


def durable_again(server: PostgresServer) -> None:
    """Restart the tests' cluster with PostgreSQL's own defaults for durability (fsync,
    synchronous_commit, full_page_writes: on), so that its commits are as durable as
    SQLite's (synchronous=FULL) and the two are compared fairly. The tests start it
    without them, and options given at start outrank any other setting."""
    owner = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    options = (
        f"-c max_connections=200 -c shared_buffers=32MB -c listen_addresses=127.0.0.1"
        f" -p {server.port} -k {server.socket_dir}"
    )
    subprocess.run(
        [
            *owner,
            str(server.bindir / "pg_ctl"),
            "restart",
            "-w",
            "-m",
            "fast",
            "-D",
            str(server.datadir),
            "-l",
            str(server.datadir.parent / "server.log"),
            "-o",
            options,
        ],
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--faxes", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3, help="each case once a round")
    parser.add_argument("--speed", type=float, default=0.02, help="the sandbox's speed")
    parser.add_argument("--failover-leases", default="2m,5s", help="leases to time, by comma")
    parser.add_argument("--send-delay", type=float, default=0.5, help="failover: send answers late")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    banner(f"Cluster: {args.faxes} faxes, two instances against one")
    with (
        running_postgres() as server,
        tempfile.TemporaryDirectory(prefix="faxgate-cluster-") as temp,
    ):
        durable_again(server)
        version = server.sql("SHOW server_version").split()[0]
        durable = server.sql("SHOW fsync"), server.sql("SHOW synchronous_commit")
        print(
            f"PostgreSQL {version}, a throwaway cluster on this machine's disk"
            f" (fsync {durable[0]}, synchronous_commit {durable[1]})"
        )
        asyncio.run(bench(args, server, Path(temp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
