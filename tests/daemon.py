"""Helpers for tests that run the whole daemon: settings for speed, queueing, settling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx

from faxgate.app import Daemon
from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.sandbox import DropboxFaxSandbox
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.sandbox.server import SandboxServer
from faxgate.settings import Settings
from faxgate.store.spool import Spool
from tests.conftest import pdf_document, sandbox_client, sandbox_settings, wait_for

CALLBACK_TOKEN = "test-callback-token-0123456789"
# The built-in sandbox's faces (`[sandbox] api`): the end-to-end paths run on both.
SANDBOX_APIS = ("hellofax", "dropbox_fax")
SETTLED = {
    JobState.SENT,
    JobState.PRESUMED_SENT,
    JobState.FAILED,
    JobState.UNCERTAIN,
    JobState.CANCELLED,
}


def fast_settings(state_dir: Path, **sections: Any) -> Settings:
    """A daemon on loopback, any free ports, with every timer shrunk for tests. A section
    given as a dict adds to the defaults; anything else (`folders=[...]`) replaces them."""
    values: dict[str, Any] = {
        "state_dir": state_dir,
        # v3's rate limit over a second, not a minute: as strict, and quick to wait out.
        "sandbox": {"listen": "127.0.0.1:0", "speed": "test", "rate_window": "1s"},
        "http": {"listen": "127.0.0.1:0", "callback_token": CALLBACK_TOKEN},
        "smtp": {"listen": "127.0.0.1:0"},
        "polling": {
            "tick": 0.05,
            "first_interval": 0.1,
            "max_interval": 0.3,
            "callback_grace": 0.3,
        },
        "retry": {"busy_delay": 0.05, "no_answer_delay": 0.05},
        "dispatch": {"backoff_first": 0.05, "backoff_max": 0.5},
    }
    for name, overrides in sections.items():
        if isinstance(overrides, dict):
            values[name] = {**values.get(name, {}), **overrides}
        else:
            values[name] = overrides
    return Settings(**values)


async def callbacks_here(daemon: Daemon) -> None:
    """Point an outside sandbox's outbound callbacks at this daemon (the built-in one is
    pointed at it on start): a sent fax is then confirmed by its callback, not presumed
    sent once the sandbox removed it."""
    url = f"http://127.0.0.1:{daemon.http.port}/callbacks/{CALLBACK_TOKEN}/outbound"
    await daemon.client.update_account(outbound_url=url)


def sandbox_of(daemon: Daemon) -> SandboxServer:
    """The daemon's built-in sandbox, whichever API it speaks."""
    assert daemon.sandbox is not None
    return daemon.sandbox


async def callbacks_off(daemon: Daemon) -> None:
    """The provider posts nothing to this daemon any more: polling alone must tell."""
    if isinstance(daemon.provider, DropboxFaxClient):
        await daemon.provider.set_callback_url("")
    else:
        await daemon.client.update_account(inbound_url="", outbound_url="")


async def queue(
    daemon: Daemon, number: str, *, pages: int = 1, tag: str = "", reply_to: str | None = None
) -> Job:
    """Queue a fax as an intake would, then wake the dispatcher. `tag` makes the document
    unique, so the sandbox's inspection can tell faxes to one number apart."""
    request = FaxRequest(
        numbers=[parse_fax_number(number)],
        documents=[
            IncomingDocument("letter.pdf", pdf_document(pages)),
            IncomingDocument("note.txt", f"fax {number} {tag}".encode()),
        ],
        intake=Intake.CLI,
        reply_to=reply_to,
    )
    spool = Spool(daemon.settings.spool_dir)
    (job,) = await asyncio.to_thread(queue_fax, daemon.store, spool, request)
    daemon.dispatcher.wake()
    return job


async def queue_many(daemon: Daemon, numbers: list[str], *, pages: int = 1) -> list[Job]:
    """One request to many numbers, as a mail to several: one job per number."""
    request = FaxRequest(
        numbers=[parse_fax_number(number) for number in numbers],
        documents=[IncomingDocument("letter.pdf", pdf_document(pages))],
        intake=Intake.CLI,
    )
    spool = Spool(daemon.settings.spool_dir)
    jobs = await asyncio.to_thread(queue_fax, daemon.store, spool, request)
    daemon.dispatcher.wake()
    return list(jobs)


async def settled(daemon: Daemon, jobs: list[Job], deadline: float = 20.0) -> list[Job]:
    """Wait until every job's story is told; return them as they ended."""

    def current() -> list[Job] | None:
        now = [daemon.store.get_job(job.id) for job in jobs]
        done = [job for job in now if job is not None and job.state in SETTLED]
        return done if len(done) == len(jobs) else None

    result: list[Job] = await wait_for(current, timeout=deadline, what="every job settled")
    return result


async def reports_delivered(daemon: Daemon, jobs: list[Job]) -> None:
    """Each job has exactly one report in the outbox, and it went out."""

    def delivered() -> bool:
        for job in jobs:
            rows = daemon.store.notifications(job.id)
            if len(rows) != 1 or rows[0].delivered_at is None:
                return False
        return True

    await wait_for(delivered, what="one delivered report per job")


def assert_sent_once_per_call(sandbox: SandboxServer, daemon: Daemon, jobs: list[Job]) -> None:
    """The sandbox saw each job's document exactly as many times as the job made calls:
    nothing was sent twice by accident."""
    sent = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
    for job in jobs:
        final = daemon.store.get_job(job.id)
        assert final is not None
        calls = final.attempt if final.state is not JobState.CANCELLED else 0
        assert sent[job.to_number.lstrip("+")] == calls, (final.id, final.state, final.reason)


class DaemonProcess:
    """`faxgate run` in a child process, on the test's sandbox."""

    def __init__(
        self,
        state_dir: Path,
        sandbox: SandboxServer,
        http_port: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.http_port = http_port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGATE_")}
        self.env.update(
            {
                "FAXGATE_STATE_DIR": str(state_dir),
                "FAXGATE_PROVIDER__BASE_URL": sandbox.base_url,
                "FAXGATE_HTTP__LISTEN": f"127.0.0.1:{http_port}",
                "FAXGATE_SMTP__LISTEN": "127.0.0.1:0",
                "FAXGATE_HTTP__CALLBACK_TOKEN": CALLBACK_TOKEN,
                "FAXGATE_POLLING__TICK": "0.1",
                "FAXGATE_POLLING__FIRST_INTERVAL": "0.2",
                "FAXGATE_POLLING__MAX_INTERVAL": "0.5",
                "FAXGATE_DISPATCH__BACKOFF_FIRST": "0.1",
                "FAXGATE_DISPATCH__BACKOFF_MAX": "1",
                # A kill before the request left leaves it for the window to tell.
                "FAXGATE_DISPATCH__RECONCILE_WINDOW": "2s",
                # The test sandbox retries callbacks 2000 times faster than HelloFax.
                "FAXGATE_PROVIDER__CALLBACK_RETRY_SCALE": "0.0005",
            }
        )
        if isinstance(sandbox, DropboxFaxSandbox):  # its v3 face: faxgate speaks v3 to it
            self.env["FAXGATE_SANDBOX__API"] = "dropbox_fax"
        self.env.update(extra_env or {})
        self.process: asyncio.subprocess.Process | None = None
        self.log = state_dir.parent / "daemon.log"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "faxgate",
                "run",
                env=self.env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own session: what it leaves behind is findable
            )

        async def healthy() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"faxgate exited:\n{self.log.read_text()}")
            try:
                async with httpx.AsyncClient() as http:
                    answer = await http.get(f"http://127.0.0.1:{self.http_port}/healthz")
                return answer.status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(healthy, timeout=20, what="faxgate to answer /healthz")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    def leftovers(self) -> list[int]:
        """Processes the daemon started that are still running (they share its session)."""
        assert self.process is not None
        session = self.process.pid  # it leads its own session
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == session:
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # gone meanwhile
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after "(name)": state, ppid, pgrp, sid
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry.name))
        return found

    async def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


async def sandbox_posts_to(
    sandbox: SandboxServer,
    http_port: int,
    callbacks: Literal["outbound", "inbound"] = "outbound",
) -> None:
    """Point the sandbox's `callbacks` at a daemon that will listen on `http_port` (on v3,
    its one events URL, whichever `callbacks`)."""
    if isinstance(sandbox, DropboxFaxSandbox):
        sandbox.set_callback_url(f"http://127.0.0.1:{http_port}/callbacks/{CALLBACK_TOKEN}/events")
        return
    url = f"http://127.0.0.1:{http_port}/callbacks/{CALLBACK_TOKEN}/{callbacks}"
    async with sandbox_client(sandbox, timeout=30.0) as client:
        if callbacks == "inbound":
            await client.update_account(inbound_url=url)
        else:
            await client.update_account(outbound_url=url)


@contextlib.asynccontextmanager
async def child_daemon(
    sandbox: SandboxServer,
    state_dir: Path,
    http_port: int,
    extra_env: dict[str, str] | None = None,
    *,
    callbacks: Literal["outbound", "inbound"] = "outbound",
) -> AsyncIterator[DaemonProcess]:
    """A DaemonProcess (not started yet) whose `callbacks` ("outbound" or "inbound") the
    sandbox already posts to its port, as it will to a restarted one; stopped at the end."""
    # The daemon knows the provider reaches it: it may count on the callbacks.
    public = {"FAXGATE_HTTP__PUBLIC_URL": f"http://127.0.0.1:{http_port}"}
    process = DaemonProcess(state_dir, sandbox, http_port, {**public, **(extra_env or {})})
    await sandbox_posts_to(sandbox, http_port, callbacks)
    try:
        yield process
    finally:
        if process.process is not None:
            await process.stop()


# ---------------------------------------------------------------------- instances on one store


@contextlib.asynccontextmanager
async def keeping_sandbox(tmp_path: Path, send_delay: float = 0.0) -> AsyncIterator[Sandbox]:
    """A sandbox (its state in tmp_path/sandbox) that keeps sent faxes listed, so a dead
    instance's fax is found again by reconciling. With `send_delay`, each send's answer
    comes that long after the fax was taken: an instance killed meanwhile leaves faxes in
    `submitting` that did reach the provider."""
    async with Sandbox(sandbox_settings(tmp_path / "sandbox", removal="nothing")) as running:
        if send_delay:
            running.faults = FaultSettings(delay=send_delay, delay_only_for_sends=True)
        yield running


def on_shared_store(url: str, lease: str, **env: str) -> dict[str, str]:
    """The environment of an instance on the PostgreSQL store at `url` with leases of
    `lease` and no message-reader processes; `env` besides."""
    return {
        "FAXGATE_STORE__URL": url,
        "FAXGATE_STORE__LEASE": lease,
        "FAXGATE_SMTP__READER_PROCESSES": "0",
        **env,
    }


def one_gateway(
    tmp_path: Path,
    sandbox: SandboxServer,
    url: str,
    lease: str,
    http: Sequence[int],
    env: Callable[[int], dict[str, str]],
) -> list[DaemonProcess]:
    """Instances acting as one gateway on the store at `url` (not started yet): instance
    n listens on http[n], its state in tmp_path/instance{n}/state; the provider reaches
    the first (the public URL of all), as a load balancer in front would send to one;
    `env(n)` besides."""
    public = f"http://127.0.0.1:{http[0]}"
    instances = [
        DaemonProcess(
            tmp_path / f"instance{n}" / "state",
            sandbox,
            port,
            on_shared_store(url, lease, FAXGATE_HTTP__PUBLIC_URL=public, **env(n)),
        )
        for n, port in enumerate(http)
    ]
    for instance in instances:
        instance.state_dir.parent.mkdir(parents=True)
    return instances


async def stop_survivors(
    instances: Sequence[DaemonProcess], survivors: Sequence[DaemonProcess]
) -> list[int]:
    """The `survivors` stopped with SIGTERM (their exit codes, in order); every other
    instance still running killed."""
    codes = [await survivor.stop() for survivor in survivors]
    for instance in instances:
        if instance.process is not None and instance.process.returncode is None:
            await instance.kill()
    return codes
