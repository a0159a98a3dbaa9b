"""The daemon under soak: `faxgate run` in a child process (tests/daemon.py's
DaemonProcess), with a hot folder and the SMTP listener on fixed loopback ports so that
clients find it again after each restart; killed with SIGKILL and started again.

Each kill notes what was in flight (jobs by state, from the store) and which of the
daemon's own child processes (the message readers) outlived it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import Store
from tests.conftest import wait_for
from tests.daemon import CALLBACK_TOKEN, DaemonProcess

__all__ = ["Kill", "SoakDaemon", "Timings", "callback_url", "free_port", "states_line"]

ENDED = (JobState.SENT, JobState.PRESUMED_SENT, JobState.FAILED, JobState.UNCERTAIN)
# How long a killed daemon's children get to notice and go before they count as orphans.
ORPHAN_GRACE = 5.0


def callback_url(http_port: int) -> str:
    """Where the provider posts outbound callbacks to a daemon on `http_port`."""
    return f"http://127.0.0.1:{http_port}/callbacks/{CALLBACK_TOKEN}/outbound"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Timings:
    """The daemon's timers, shrunk so that a run takes minutes (the sandbox's speed is
    shrunk alike)."""

    busy_retries: int = 3
    no_answer_retries: int = 1
    retry_delay: float = 0.5  # seconds before calling a busy or silent number again
    provider_timeout: float = 2.5  # some slow answers outlast it: ambiguous sends
    callback_grace: float = 3.0  # first poll of a fax whose callback has not come
    poll_interval: float = 1.0  # then every 1 s, up to 3 s
    stable_for: float = 0.3  # a hot-folder file found by listing, unchanged this long

    def environment(self) -> dict[str, str]:
        return {
            "FAXGATE_RETRY__BUSY_RETRIES": str(self.busy_retries),
            "FAXGATE_RETRY__NO_ANSWER_RETRIES": str(self.no_answer_retries),
            "FAXGATE_RETRY__BUSY_DELAY": f"{self.retry_delay}s",
            "FAXGATE_RETRY__NO_ANSWER_DELAY": f"{self.retry_delay}s",
            "FAXGATE_PROVIDER__TIMEOUT": str(self.provider_timeout),
            "FAXGATE_POLLING__TICK": "0.25",
            "FAXGATE_POLLING__CALLBACK_GRACE": f"{self.callback_grace}s",
            "FAXGATE_POLLING__FIRST_INTERVAL": f"{self.poll_interval}s",
            "FAXGATE_POLLING__MAX_INTERVAL": f"{3 * self.poll_interval}s",
        }


@dataclass(slots=True)
class Kill:
    at: float  # seconds since the run began
    pid: int
    jobs: dict[str, int]  # jobs by state just before the kill
    orphans: list[int] = field(default_factory=list)  # its processes alive ORPHAN_GRACE later


@dataclass
class SoakDaemon:
    """Start, kill, restart and stop the daemon; `up` is set while it takes work."""

    root: Path
    sandbox: Sandbox
    outbox: Path
    timings: Timings
    http_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    kills: list[Kill] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # exits nobody asked for
    _watching: list[asyncio.Task[None]] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    callbacks: bool = True  # False: polling only (no public URL)
    name: str = ""  # an instance's own folder under root ("": root itself, one daemon)
    store_url: str = ""  # "": SQLite in the state directory; else the shared PostgreSQL
    public_url: str = ""  # where the provider posts callbacks ("": this daemon's own port)
    extra_env: dict[str, str] = field(default_factory=dict)
    process: DaemonProcess = field(init=False)
    _store: Store | None = None

    def __post_init__(self) -> None:
        folders = [
            {
                "path": str(self.outbox),
                "stable_for": self.timings.stable_for,
                "rescan_interval": "5s",
            }
        ]
        env = {
            "FAXGATE_SMTP__LISTEN": f"127.0.0.1:{self.smtp_port}",
            "FAXGATE_FOLDERS": json.dumps(folders),
            "FAXGATE_LOG_LEVEL": "info",
            # The sandbox retries callbacks on its own speed: faxgate waits for them so.
            "FAXGATE_PROVIDER__CALLBACK_RETRY_SCALE": str(self.sandbox.settings.speed),
            **self.timings.environment(),
        }
        if self.callbacks:
            # Callbacks are expected (as with a public URL): the first poll waits for them.
            env["FAXGATE_HTTP__PUBLIC_URL"] = (
                self.public_url or f"http://127.0.0.1:{self.http_port}"
            )
        if self.store_url:
            env["FAXGATE_STORE__URL"] = self.store_url
        env.update(self.extra_env)
        self.process = DaemonProcess(self.state_dir, self.sandbox, self.http_port, env)

    @property
    def home(self) -> Path:
        """The daemon's own folder: its state directory and its log."""
        return self.root / self.name if self.name else self.root

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def log(self) -> Path:
        return self.process.log

    @property
    def pid(self) -> int | None:
        running = self.process.process
        return running.pid if running is not None and running.returncode is None else None

    def store(self) -> Store:
        """The run's own connection to the daemon's store (reads only), opened once the
        daemon has made it."""
        assert self._store is not None, "the daemon has not started yet"
        return self._store

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self.process.start()
        await wait_for(self._smtp_answers, timeout=30, what="the SMTP listener after a start")
        if self._store is None:
            # The store the daemon's settings name: its SQLite file, or the shared database.
            self._store = Store.open_configured(
                self.store_url, "", self.state_dir / "faxgate.sqlite3"
            )
        self.up.set()

    async def kill(self) -> Kill | None:
        """SIGKILL; None when the daemon had already exited by itself (noted in crashes)."""
        self.up.clear()
        pid = self.pid
        if pid is None:
            self._note_crash()
            return None
        jobs = await asyncio.to_thread(self._jobs_by_state)
        await self.process.kill()
        kill = Kill(round(self._since(), 1), pid, jobs)
        self.kills.append(kill)
        self._watching.append(asyncio.create_task(self._end_orphans(kill)))
        return kill

    async def _end_orphans(self, kill: Kill) -> None:
        """Note the killed daemon's processes (its message readers) that are still there
        ORPHAN_GRACE later (or none, as soon as none is); end them, by pid, with SIGKILL."""
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: not self._strays(), timeout=ORPHAN_GRACE, interval=0.1)
        kill.orphans = sorted(self._strays())
        _end(kill.orphans)

    async def orphans_ended(self) -> tuple[int, int]:
        """Once the daemon is stopped and every kill's processes were given their time:
        (processes that outlived a kill, processes left after the last stop); all were
        ended by their pid."""
        await asyncio.gather(*self._watching)
        left = sorted(self._strays())
        _end(left)
        return sum(len(kill.orphans) for kill in self.kills), len(left)

    def _strays(self) -> set[int]:
        """Live processes of this run's daemons (they carry its state directory in their
        environment) that are not the running daemon's: left by a daemon that is gone."""
        mine = f"FAXGATE_STATE_DIR={self.state_dir}".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environment = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mine in environment and _alive(int(entry.name)):
                found.add(int(entry.name))
        # Read after the scan: whatever the running daemon started meanwhile is its own.
        running = self.pid
        if running is not None:
            found -= {running, *descendants(running)}
        return found

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        self.up.clear()
        if self.pid is None:
            self._note_crash()
        return await self.process.stop()

    def _note_crash(self) -> None:
        running = self.process.process
        if running is not None and running.returncode is not None:
            self.crashes.append(f"exit status {running.returncode} at {self._since():.1f}s")

    def _since(self) -> float:
        return time.monotonic() - self.began

    def ended_jobs(self) -> int:
        """Jobs that reached an outcome (blocking: a store read)."""
        return self.store().count_in_states(ENDED)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _jobs_by_state(self) -> dict[str, int]:
        counts = self.store().count_by_state()
        return {state.value: n for state, n in counts.items() if n}

    async def _smtp_answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.smtp_port)
        except OSError:
            return False
        try:
            greeting = await asyncio.wait_for(reader.readline(), 10)
            writer.write(b"QUIT\r\n")
            await writer.drain()
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return greeting.startswith(b"220")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children[parent].append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _end(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def states_line(jobs: dict[str, int]) -> str:
    order = Counter(jobs).most_common()
    return ", ".join(f"{state} {n}" for state, n in order) or "none"
