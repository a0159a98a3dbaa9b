"""faxgate killed with SIGKILL mid-work: after a restart every job ends once, none is sent
twice. The daemon runs as a real process; the sandbox lives in the test, so it outlives it."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from faxgate.domain.jobs import Intake, Job, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.dropbox_fax.sandbox import DropboxFaxSandbox
from faxgate.hellofax.sandbox import Sandbox
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.sandbox.server import SandboxServer
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import (
    pdf_document,
    sandbox_settings,
    wait_for,
)
from tests.daemon import SANDBOX_APIS, SETTLED, DaemonProcess, child_daemon


@pytest.fixture
async def daemon(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port: int
) -> AsyncIterator[DaemonProcess]:
    async with child_daemon(sandbox, tmp_path / "state", unused_tcp_port) as process:
        yield process


@pytest.fixture(params=SANDBOX_APIS)
async def either_sandbox(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[SandboxServer]:
    """An outside sandbox speaking each API in turn."""
    face = DropboxFaxSandbox if request.param == "dropbox_fax" else Sandbox
    async with face(sandbox_settings(tmp_path / "sandbox")) as running:
        yield running


@pytest.fixture
async def daemon_on_either(
    either_sandbox: SandboxServer, tmp_path: Path, unused_tcp_port: int
) -> AsyncIterator[DaemonProcess]:
    async with child_daemon(either_sandbox, tmp_path / "state", unused_tcp_port) as process:
        yield process


@contextmanager
def opened(state_dir: Path) -> Iterator[Store]:
    with Store.open(state_dir / "faxgate.sqlite3") as store:
        yield store


def queue_many(state_dir: Path, count: int, first: int = 200) -> list[Job]:
    jobs = []
    with opened(state_dir) as store:
        spool = Spool(state_dir / "spool")
        for n in range(first, first + count):
            request = FaxRequest(
                numbers=[parse_fax_number(f"+1415555{n:04d}")],
                documents=[IncomingDocument("letter.pdf", pdf_document(1))],
                intake=Intake.CLI,
            )
            jobs.extend(queue_fax(store, spool, request))
    return jobs


def states(state_dir: Path, jobs: list[Job]) -> dict[str, JobState]:
    with opened(state_dir) as store:
        found = (store.get_job(job.id) for job in jobs)
        return {job.id: job.state for job in found if job is not None}


def sends_per_number(sandbox: SandboxServer) -> Counter[str]:
    return Counter(t.to for t in sandbox.inspect() if not t.is_inbound)


async def test_killed_while_the_answer_is_awaited(
    daemon_on_either: DaemonProcess, either_sandbox: SandboxServer
) -> None:
    daemon, sandbox = daemon_on_either, either_sandbox
    sandbox.faults.delay = 30.0  # the fax is accepted, the answer held back
    sandbox.faults.delay_only_for_sends = True
    daemon.state_dir.mkdir(parents=True)
    (job,) = queue_many(daemon.state_dir, 1)
    await daemon.start()
    await wait_for(lambda: len(sandbox.inspect()) == 1, timeout=20, what="the fax at the sandbox")
    assert states(daemon.state_dir, [job])[job.id] is JobState.SUBMITTING
    await daemon.kill()

    sandbox.faults.delay = 0.0
    await daemon.start()
    await wait_for(
        lambda: states(daemon.state_dir, [job])[job.id] is JobState.SENT,
        timeout=20,
        what="the job reconciled and sent",
    )
    assert sends_per_number(sandbox) == {"14155550200": 1}


async def test_killed_again_and_again_with_work_in_every_state(
    daemon: DaemonProcess, sandbox: Sandbox
) -> None:
    sandbox.faults.delay = 0.2
    sandbox.faults.delay_only_for_sends = True
    daemon.state_dir.mkdir(parents=True)
    jobs = queue_many(daemon.state_dir, 30)
    await daemon.start()
    for round_ in range(3):
        # Kill once some faxes went out in this round: work is then queued, submitting,
        # submitted and done at once.
        target = 5 * (round_ + 1)

        def some_sent(target: int = target) -> bool:
            return len(sandbox.inspect()) >= target

        await wait_for(some_sent, timeout=30, what=f"{target} faxes at the sandbox")
        await daemon.kill()
        await daemon.start()
    sandbox.faults.delay = 0.0

    def all_settled() -> bool:
        return all(state in SETTLED for state in states(daemon.state_dir, jobs).values())

    await wait_for(all_settled, timeout=60, what="every job settled")
    final = states(daemon.state_dir, jobs)
    assert set(final.values()) == {JobState.SENT}, Counter(final.values())
    assert set(sends_per_number(sandbox).values()) == {1}
    assert len(sends_per_number(sandbox)) == len(jobs)
    assert await daemon.stop() == 0
