"""An instance among several on one PostgreSQL store: its leases renewed while it runs
and given up when it stops, and word from the others waking its parts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake, JobState
from faxgate.instances import sharing
from faxgate.store import NewJob, NewNotification, Share, Store
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
