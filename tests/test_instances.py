"""An instance among several on one PostgreSQL store: its leases renewed while it runs
and given up when it stops, and word from the others waking its parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from faxgate import __version__
from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake, JobState
from faxgate.instances import sharing
from faxgate.store import NewJob, NewNotification, Share, Store, gone_after
from tests.conftest import wait_for
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[Store, Store]]:
    with Store.open_url(postgres_url) as one, Store.open_url(postgres_url) as two:
        yield one, two


async def test_leases_are_renewed_while_the_instance_runs_and_given_up_when_it_stops(
    stores: tuple[Store, Store],
) -> None:
    mine, other = stores
    share = Share("a", timedelta(seconds=1))
    [job] = mine.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)])
    async with sharing(mine, share, {}):
        mine.claim_due_jobs(utc_now(), 1, owner="a", lease=share.lease)
        mine.transition(job.id, JobState.SUBMITTING, detail="sending")
        await asyncio.sleep(0)
        ends = time.monotonic() + 3 * share.lease.total_seconds()
        while time.monotonic() < ends:  # three leases long, never free for another
            assert other.claim_orphans(utc_now(), 5, owner="b", lease=share.lease) == []
            await asyncio.sleep(0.05)
    assert mine.lease(job.id) is None  # given up: another takes it at once
    assert [j.id for j in other.claim_orphans(utc_now(), 5, owner="b", lease=share.lease)] == [
        job.id
    ]


async def test_work_left_by_another_instance_wakes_the_parts_at_once(
    stores: tuple[Store, Store],
) -> None:
    mine, other = stores
    woken: list[str] = []
    wake = {"jobs": [lambda: woken.append("jobs")], "outbox": [lambda: woken.append("outbox")]}
    async with sharing(mine, Share("a", timedelta(minutes=2)), wake):
        started = time.monotonic()
        other.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)])
        await wait_for(lambda: "jobs" in woken, timeout=5, what="the dispatcher woken")
        jobs_after = time.monotonic() - started
        other.add_notification(NewNotification(job_id=None, kind="mail", payload={}))
        await wait_for(lambda: "outbox" in woken, timeout=5, what="the notifier woken")
    # Sooner than any polling fallback would have looked (the dispatcher's 1 s).
    assert jobs_after < 1.0, jobs_after


async def test_the_heartbeat_shows_the_instance_alive_and_a_stop_shows_it_gone(
    stores: tuple[Store, Store],
) -> None:
    mine, other = stores
    share = Share("a", timedelta(seconds=0.6), host="gw1", pid=41)
    gone = gone_after(share.lease)
    async with sharing(mine, share, {}):
        # Seen from the start, before the first renewal.
        [member] = other.cluster(utc_now(), gone)
        assert (member.owner, member.host, member.pid, member.alive) == ("a", "gw1", 41, True)
        assert member.version == __version__
        first_seen = member.last_seen
        assert first_seen is not None

        def seen_again() -> bool:
            [again] = other.cluster(utc_now(), gone)
            return again.last_seen is not None and again.last_seen > first_seen

        await wait_for(seen_again, timeout=5, what="the heartbeat writing the row again")
    [stopped] = other.cluster(utc_now(), gone)
    assert not stopped.alive
    assert stopped.stopped_at is not None
