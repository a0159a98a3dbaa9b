"""Three `faxgate run` processes sharing one PostgreSQL store and one sandbox, as one
gateway: faxes come by mail to each in turn, one instance is SIGKILLed while it holds
faxes being sent, and the others take its work over once its leases run out.

The sandbox is the judge: every fax reached it exactly once, and every job ended. The
failover time (from the kill to the moment the dead instance holds no work another
could do) is measured and printed; with a 2 s lease it is the lease's remainder plus a
dispatcher's look for orphans (1 s at the most).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from faxgate.hellofax.sandbox import Sandbox
from tests.conftest import wait_for
from tests.daemon import keeping_sandbox, one_gateway, sandbox_posts_to, stop_survivors
from tests.intake.smtp.testing import fax_mail, mail_to
from tests.postgres import held_by, postgres_server, postgres_url, rows

__all__ = ["postgres_server", "postgres_url"]

PortFactory = Callable[[], int]
FAXES = 50
KILLED_AFTER = 30  # mails sent before the kill; the rest go to the survivors
LEASE = "2s"
# Each send's answer comes this long after the fax was taken: an instance killed then
# leaves faxes in `submitting` that did reach the provider (found again by reconciling).
SEND_DELAY = 0.5
ENDED = ("sent", "presumed_sent", "failed", "uncertain", "cancelled")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    async with keeping_sandbox(tmp_path, send_delay=SEND_DELAY) as running:
        yield running


def number(index: int) -> str:
    return f"1415555{3000 + index:04d}"


async def mail(port: int, index: int) -> None:
    message = fax_mail(number(index), pages=1, message_id=f"<fax-{index}@example.com>")
    await mail_to(port, number(index), message)


async def test_three_instances_on_one_database_survive_one_killed(
    tmp_path: Path,
    sandbox: Sandbox,
    postgres_url: str,
    unused_tcp_port_factory: PortFactory,
) -> None:
    http = [unused_tcp_port_factory() for _ in range(3)]
    smtp = [unused_tcp_port_factory() for _ in range(3)]
    # Callbacks reach the first instance, as a load balancer in front would send them to one.
    await sandbox_posts_to(sandbox, http[0])
    instances = one_gateway(
        tmp_path,
        sandbox,
        postgres_url,
        LEASE,
        http,
        lambda n: {"FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp[n]}"},
    )
    victim = instances[2]
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        assert victim.process is not None
        dead = f"{socket.gethostname()}:{victim.process.pid}:"

        for index in range(KILLED_AFTER):
            await mail(smtp[index % 3], index)

        async def victim_is_sending() -> bool:
            [(sending,)] = await asyncio.to_thread(
                rows,
                postgres_url,
                "SELECT count(*) FROM jobs WHERE lease_owner LIKE %s AND state = 'submitting'",
                dead + "%",
            )
            return int(sending) > 0

        await wait_for(victim_is_sending, timeout=20, what="the victim sending a fax")
        held_at_kill = await asyncio.to_thread(held_by, postgres_url, dead + "%")
        await victim.kill()
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            return await asyncio.to_thread(held_by, postgres_url, dead + "%") == 0

        await wait_for(taken_over, timeout=20, what="the dead instance's work taken over")
        failover = time.monotonic() - killed_at
        print(
            f"\nfailover: {failover:.2f}s from SIGKILL to its work taken over"
            f" (lease {LEASE}, {held_at_kill} items held at the kill)"
        )

        for index in range(KILLED_AFTER, FAXES):
            await mail(smtp[index % 2], index)

        async def all_ended() -> bool:
            [(open_jobs,)] = await asyncio.to_thread(
                rows,
                postgres_url,
                f"SELECT count(*) FROM jobs WHERE state NOT IN {ENDED}",  # noqa: S608
            )
            [(total,)] = await asyncio.to_thread(rows, postgres_url, "SELECT count(*) FROM jobs")
            return int(total) == FAXES and int(open_jobs) == 0

        await wait_for(all_ended, timeout=30, what="every job ended")

        jobs = await asyncio.to_thread(
            rows, postgres_url, "SELECT to_number, state, attempt FROM jobs"
        )
        assert sorted(to for to, _, _ in jobs) == sorted(f"+{number(i)}" for i in range(FAXES))
        assert Counter(state for _, state, _ in jobs) == {"sent": FAXES}, jobs
        sent = Counter(t.to for t in sandbox.inspect() if not t.is_inbound)
        assert sent == {number(i): 1 for i in range(FAXES)}  # each exactly once
        assert sandbox.duplicates() == []

        # Every reply is delivered, by one instance or another.
        async def replies_delivered() -> bool:
            [(owed,)] = await asyncio.to_thread(
                rows, postgres_url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"
            )
            return int(owed) == 0

        await wait_for(replies_delivered, timeout=20, what="every reply delivered")
        [(notes,)] = await asyncio.to_thread(rows, postgres_url, "SELECT count(*) FROM outbox")
        assert notes == FAXES
        mailed = sum(
            len(list((instance.state_dir / "maildir" / "new").glob("*")))
            for instance in instances
            if (instance.state_dir / "maildir" / "new").is_dir()
        )
        # A reply mailed by the victim just before it died, and not yet marked, is mailed
        # again by another instance (at least once); never more than those it held.
        assert FAXES <= mailed <= FAXES + held_at_kill
        sends = [instance.log.read_text().count("submitting job=") for instance in instances]
        print(f"sends by instance: {sends}, replies mailed: {mailed}")
        assert all(sends), sends  # the work was shared, not taken by one
    finally:
        codes = await stop_survivors(instances, instances[:2])
    assert codes == [0, 0]
    # A clean stop gives the leases up: nothing is left held by the survivors.
    [(held,)] = rows(
        postgres_url, "SELECT count(*) FROM jobs WHERE lease_until > now() AND state = 'submitting'"
    )
    assert held == 0
