"""Dispatchers of several instances sharing one PostgreSQL store, against the sandbox:
each fax claimed and sent by one of them, and a fax left in `submitting` by an instance
left alone while its lease holds, then reconciled (never sent again blindly) by another."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest

from faxgate.domain.jobs import Job
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.sandbox import Sandbox
from faxgate.sending.dispatcher import Dispatcher
from faxgate.store import Share, Store
from faxgate.store.spool import Spool
from tests.conftest import sandbox_client, wait_for
from tests.postgres import postgres_server, postgres_url
from tests.sending.test_dispatcher import (
    REPORT,
    S,
    ShiftedClock,
    assert_each_sent_once,
    clock,
    dispatcher,
    fresh,
    number,
    outbound,
    queue,
    send_directly,
    spool,
    state,
)

# The fixtures, shared with the dispatcher's own tests.
__all__ = ["clock", "postgres_server", "postgres_url", "spool"]

LEASE = timedelta(seconds=30)


@pytest.fixture
def store(postgres_url: str) -> Iterator[Store]:
    with Store.open_url(postgres_url) as opened:
        yield opened


@pytest.fixture
async def clients(sandbox: Sandbox) -> AsyncIterator[tuple[HelloFaxClient, HelloFaxClient]]:
    async with sandbox_client(sandbox) as one, sandbox_client(sandbox) as two:
        yield one, two


def instances(
    store: Store,
    clients: tuple[HelloFaxClient, HelloFaxClient],
    clock: ShiftedClock,
    **options: Any,
) -> tuple[Dispatcher, Dispatcher]:
    """The dispatchers of instances "a" and "b" on the one store, each with its own client."""
    a = dispatcher(store, clients[0], clock, share=Share("a", LEASE), **options)
    b = dispatcher(store, clients[1], clock, share=Share("b", LEASE), **options)
    return a, b


def lease_owner(store: Store, job: Job) -> str:
    """The instance whose lease the job is under (it must have one)."""
    lease = store.lease(job.id)
    assert lease is not None
    return lease.owner


async def test_two_instances_share_the_queue_and_send_each_fax_once(
    sandbox: Sandbox,
    clients: tuple[HelloFaxClient, HelloFaxClient],
    store: Store,
    spool: Spool,
    clock: ShiftedClock,
) -> None:
    jobs = queue(store, spool, [number(n) for n in range(20)])
    a, b = instances(store, clients, clock, max_in_flight=7)
    while any(state(store, job) is S.QUEUED for job in jobs):
        reports = await asyncio.gather(a.dispatch_once(), b.dispatch_once())
        # The provider's limit holds across both: neither took room the other used.
        assert sum(report.picked for report in reports) <= 7
        for job in jobs:  # the polls a poller would make: the sandbox sends at once
            if state(store, job) is S.SUBMITTED:
                store.transition(job.id, S.SENT, detail="sent", expect=S.SUBMITTED)
    assert_each_sent_once(sandbox, store, jobs)
    owners = {lease.owner for job in jobs if (lease := store.lease(job.id)) is not None}
    assert owners <= {"a", "b"}


@pytest.mark.parametrize("removal", ["nothing"])  # adopting a fax still listed as sent
async def test_a_dead_instances_fax_in_submitting_is_reconciled_by_another_once_its_lease_ran_out(
    sandbox: Sandbox,
    clients: tuple[HelloFaxClient, HelloFaxClient],
    store: Store,
    spool: Spool,
    clock: ShiftedClock,
) -> None:
    (job,) = queue(store, spool, [number(1)], document=REPORT)
    # Instance "a" claims it, commits `submitting`, its request leaves... and it dies.
    [claimed] = store.claim_due_jobs(clock(), 1, owner="a", lease=LEASE)
    store.transition(
        claimed.id, S.SUBMITTING, detail="submitting", expect=S.QUEUED, submitted_at=clock()
    )
    tx = await send_directly(clients[0], store, job)
    await wait_for(lambda: [i for i in outbound(sandbox) if i.status == "S"], what="the fax sent")

    b = dispatcher(store, clients[1], clock, share=Share("b", LEASE))
    await b.recover()
    await b.dispatch_once()
    # While a's lease holds, its request may still be on its way: b leaves the fax alone.
    assert state(store, job) is S.SUBMITTING
    assert lease_owner(store, job) == "a"

    clock.advance(LEASE)
    await b.dispatch_once()
    current = fresh(store, job)
    assert current.state is S.SUBMITTED  # found at the provider, not sent again
    assert current.provider_guid == tx.guid
    assert lease_owner(store, job) == "b"
    assert_each_sent_once(sandbox, store, [job])


async def test_two_instances_call_one_number_one_fax_at_a_time(
    sandbox: Sandbox,
    clients: tuple[HelloFaxClient, HelloFaxClient],
    store: Store,
    spool: Spool,
    clock: ShiftedClock,
) -> None:
    letters = [REPORT + f"% letter {n}\n".encode() for n in range(4)]
    burst = [queue(store, spool, [number(1)], document=letter)[0] for letter in letters]
    other = queue(store, spool, [number(2)])
    a, b = instances(store, clients, clock)
    sent_order = []
    while any(state(store, job) is S.QUEUED for job in burst):
        await asyncio.gather(a.dispatch_once(), b.dispatch_once())
        at_provider = [job for job in burst if state(store, job) is S.SUBMITTED]
        assert len(at_provider) <= 1  # across both instances
        sent_order += [job.id for job in at_provider]
        for job in at_provider:  # the call ends, as a callback would say
            store.transition(job.id, S.SENT, detail="sent", expect=S.SUBMITTED)
    assert sent_order == [job.id for job in burst]  # in the order they came
    assert state(store, other[0]) is S.SUBMITTED
    assert_each_sent_once(sandbox, store, [*burst, *other])
