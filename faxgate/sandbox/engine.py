"""The sandbox's clock: moves faxes along their plan and hands due callbacks to the sender.

One task sleeps until the earliest due moment (a fax's next move or a callback) or until
woken by new work. Due times are wall-clock times kept in SQLite, so after a restart
whatever fell due meanwhile happens at once and the rest keeps its schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from faxgate.runner import wait_for_event
from faxgate.sandbox import lifecycle
from faxgate.sandbox.callbacks import CallbackDispatcher
from faxgate.sandbox.faults import FaultInjector
from faxgate.sandbox.records import TransmissionRecord
from faxgate.sandbox.removal import removed_at_once
from faxgate.sandbox.service import SandboxService, received_document
from faxgate.sandbox.state import SandboxStore

STALL_POLL = 0.05  # seconds between looks at the stall switch, which can flip silently
RETRY_BROKEN = 5.0  # seconds before a fax whose move failed is tried again

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, store: SandboxStore, faults: FaultInjector) -> None:
        self._store = store
        self._faults = faults
        self._woken = asyncio.Event()
        self._service: SandboxService | None = None
        self._dispatcher: CallbackDispatcher | None = None

    def attach(self, service: SandboxService, dispatcher: CallbackDispatcher) -> None:
        self._service = service
        self._dispatcher = dispatcher

    def wake(self) -> None:
        self._woken.set()

    async def run(self) -> None:
        assert self._service is not None, "attach() first"
        assert self._dispatcher is not None, "attach() first"
        while True:
            self._woken.clear()
            stalled = self._faults.settings.stall_faxes
            if not stalled:
                for record in self._store.due_transmissions(time.time()):
                    try:
                        await self._advance(self._service, record)
                    except Exception:
                        # One broken fax must not stop the clock for all the others.
                        log.exception("transmission could not advance guid=%s", record.guid)
                        with self._store.transaction():
                            self._store.postpone(record.guid, time.time() + RETRY_BROKEN)
            for due in self._store.due_callbacks(time.time()):
                if due.id not in self._dispatcher.in_flight:
                    self._dispatcher.dispatch(due)
            await self._sleep(stalled)

    async def _sleep(self, stalled: bool) -> None:
        assert self._dispatcher is not None
        candidates = [self._store.next_callback_due(sorted(self._dispatcher.in_flight))]
        if not stalled:
            candidates.append(self._store.next_transmission_due())
        due = [moment for moment in candidates if moment is not None]
        timeout = max(0.0, min(due) - time.time()) if due else None
        if stalled:
            timeout = STALL_POLL if timeout is None else min(timeout, STALL_POLL)
        await wait_for_event(self._woken, timeout)

    async def _advance(self, service: SandboxService, record: TransmissionRecord) -> None:
        step, rest = record.plan[0], record.plan[1:]
        now = time.time()
        moved = dataclasses.replace(
            record,
            status=step.status,
            error_code=step.error_code,
            updated_at=now,
            plan=rest,
            next_at=now + rest[0].after if rest else None,
        )
        # A fax sent to one of the account's own lines also arrives there (step 11).
        document = None
        if step.status == lifecycle.SENT and record.to in service.lines():
            document = await received_document(service.sent_parts(record), record.cover)
        with self._store.transaction():
            self._store.advance(
                record.guid,
                status=moved.status,
                error_code=moved.error_code,
                plan=moved.plan,
                next_at=moved.next_at,
                updated_at=now,
            )
            url = service.wire.outbound_url(service.account())
            payload = service.wire.outbound_payload(moved) if url else None
            if url and payload is not None:
                self._store.add_callback(
                    transmission_guid=record.guid,
                    kind="outbound",
                    url=url,
                    payload=payload,
                    due_at=now,
                )
            elif removed_at_once(url):
                service.remove_if_due(moved, now)
            if document is not None:
                service.record_received(
                    to=record.to, from_=record.from_, document=document, pages=record.pages, now=now
                )
