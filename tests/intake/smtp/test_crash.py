"""faxgate killed with SIGKILL right after it answered 250: the mail is not lost, and its
faxes go out once after the restart. The daemon runs as a real process."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import Store
from tests.conftest import wait_for
from tests.daemon import DaemonProcess, child_daemon
from tests.intake.smtp.testing import FAX_DOMAIN, SENDER, fax_mail, smtp_client


@pytest.fixture
async def daemon(
    sandbox: Sandbox, tmp_path: Path, unused_tcp_port_factory: Callable[[], int]
) -> AsyncIterator[tuple[DaemonProcess, int]]:
    http_port, smtp_port = unused_tcp_port_factory(), unused_tcp_port_factory()
    # Its callbacks reach it: a fax taken while it was killed is found by one after all.
    env = {"FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp_port}"}
    async with child_daemon(sandbox, tmp_path / "state", http_port, env) as process:
        yield process, smtp_port


def job_states(state_dir: Path) -> list[JobState]:
    with Store.open(state_dir / "faxgate.sqlite3") as store:
        return [job.state for job in store.recent_jobs(100)]


async def test_killed_right_after_250(daemon: tuple[DaemonProcess, int], sandbox: Sandbox) -> None:
    process, port = daemon
    # Sends are held back, so the kill lands while the faxes are still on faxgate's side
    # or on their way: either way, after the restart each goes out once.
    sandbox.faults.delay = 0.5
    sandbox.faults.delay_only_for_sends = True
    await process.start()
    numbers = [f"1415555050{n}" for n in range(1, 4)]
    async with smtp_client(port) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [f"{n}@{FAX_DOMAIN}" for n in numbers], fax_mail("x"))
    assert reply.code == 250, reply
    await process.kill()
    # Its message readers (worker processes) end too, though nobody could stop them.
    await wait_for(lambda: not process.leftovers(), timeout=15, what="the readers to end")

    assert len(job_states(process.state_dir)) == 3  # on disk before the answer
    sandbox.faults.delay = 0.0
    await process.start()

    def all_sent() -> bool:
        return job_states(process.state_dir) == [JobState.SENT] * 3

    await wait_for(all_sent, timeout=30, what="the three faxes sent")
    sent = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
    assert sent == dict.fromkeys(numbers, 1)
