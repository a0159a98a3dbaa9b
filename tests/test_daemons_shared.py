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
from typing import Any

import aiosmtplib
import psycopg
import pytest

from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from tests.conftest import sandbox_settings, wait_for
from tests.daemon import DaemonProcess, sandbox_posts_to
from tests.intake.smtp.testing import FAX_DOMAIN, SENDER, fax_mail
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

PortFactory = Callable[[], int]
FAXES = 50
KILLED_AFTER = 30  # mails sent before the kill; the rest go to the survivors
LEASE = "2s"
ENDED = ("sent", "presumed_sent", "failed", "uncertain", "cancelled")


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    # Sent faxes stay listed, so a dead instance's fax is found again by reconciling.
    settings = sandbox_settings(tmp_path / "sandbox", removal="nothing")
    async with Sandbox(settings) as running:
        # Each send's answer comes half a second after the fax was taken: an instance
        # killed then leaves faxes in `submitting` that did reach the provider.
        running.faults = FaultSettings(delay=0.5, delay_only_for_sends=True)
        yield running


def number(index: int) -> str:
    return f"1415555{3000 + index:04d}"


def rows(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def held_by(url: str, owner_prefix: str) -> int:
    """The work an instance holds that another could do: faxes claimed or being sent,
    notifications not yet delivered."""
    [(jobs,)] = rows(
        url,
        "SELECT count(*) FROM jobs WHERE lease_owner LIKE %s AND state IN ('queued', 'submitting')",
        owner_prefix + "%",
    )
    [(notes,)] = rows(
        url,
        "SELECT count(*) FROM outbox WHERE lease_owner LIKE %s AND delivered_at IS NULL",
        owner_prefix + "%",
    )
    return int(jobs) + int(notes)


async def mail(port: int, index: int) -> None:
    message = fax_mail(number(index), pages=1, message_id=f"<fax-{index}@example.com>")
    errors, _ = await aiosmtplib.send(
        message,
        sender=SENDER,
        recipients=[f"{number(index)}@{FAX_DOMAIN}"],
        hostname="127.0.0.1",
        port=port,
        timeout=20,
    )
    assert errors == {}


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
    instances = [
        DaemonProcess(
            tmp_path / f"instance{n}" / "state",
            sandbox,
            http[n],
            {
                "FAXGATE_STORE__URL": postgres_url,
                "FAXGATE_STORE__LEASE": LEASE,
                "FAXGATE_SMTP__LISTEN": f"127.0.0.1:{smtp[n]}",
                "FAXGATE_SMTP__READER_PROCESSES": "0",
                "FAXGATE_HTTP__PUBLIC_URL": f"http://127.0.0.1:{http[0]}",
            },
        )
        for n in range(3)
    ]
    for instance in instances:
        instance.state_dir.parent.mkdir(parents=True)
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
        held_at_kill = await asyncio.to_thread(held_by, postgres_url, dead)
        await victim.kill()
        killed_at = time.monotonic()

        async def taken_over() -> bool:
            return await asyncio.to_thread(held_by, postgres_url, dead) == 0

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
        codes = [await instance.stop() for instance in instances[:2]]
        for instance in instances:
            if instance.process is not None and instance.process.returncode is None:
                await instance.kill()
    assert codes == [0, 0]
    # A clean stop gives the leases up: nothing is left held by the survivors.
    [(held,)] = rows(
        postgres_url, "SELECT count(*) FROM jobs WHERE lease_until > now() AND state = 'submitting'"
    )
    assert held == 0
