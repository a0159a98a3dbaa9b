"""Posting callbacks as the provider does: multipart with a `json` part, retried until 200.

The dispatcher owns one task per delivery; the engine hands it callbacks that are due and
is woken when a delivery settles. Callback faults (copies, delay, shuffle, late copies)
are applied here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import aiohttp

from faxgate.sandbox.lifecycle import callback_retry_after
from faxgate.sandbox.parts import SimulationParts
from faxgate.sandbox.records import CallbackRecord
from faxgate.sandbox.removal import removes
from faxgate.sandbox.settings import SandboxSettings
from faxgate.sandbox.wire import CALLBACK_JSON_PART

log = logging.getLogger(__name__)


def callback_body(
    record: CallbackRecord, document: bytes | None, document_part: str | None
) -> aiohttp.MultipartWriter:
    body = aiohttp.MultipartWriter("form-data")
    part = body.append(record.payload, {"Content-Type": "text/plain; charset=utf-8"})
    part.set_content_disposition("form-data", name=CALLBACK_JSON_PART)
    if document is not None and document_part is not None:
        file_part = body.append(document, {"Content-Type": "application/pdf"})
        file_part.set_content_disposition(
            "form-data", name=document_part, filename=record.document_name or "fax.pdf"
        )
    return body


class CallbackDispatcher:
    def __init__(self, parts: SimulationParts, settings: SandboxSettings) -> None:
        self._parts = parts
        self._store = parts.store
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._batch: list[CallbackRecord] = []
        self._batch_open = False
        self.in_flight: set[int] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._settings.callback_timeout)
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def dispatch(self, record: CallbackRecord) -> None:
        """Deliver a due callback (once; it stays in flight until it settles)."""
        self.in_flight.add(record.id)
        if self._parts.faults.settings.callback_shuffle:
            self._batch.append(record)
            if not self._batch_open:
                self._batch_open = True
                self._spawn(self._deliver_batch())
        else:
            self._spawn(self._deliver(record))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_batch(self) -> None:
        """Gather what falls due within the window, then deliver it in another order."""
        await asyncio.sleep(self._parts.faults.settings.callback_shuffle_window)
        batch, self._batch, self._batch_open = self._batch, [], False
        order = list(batch)
        self._parts.faults.random.shuffle(order)
        if len(order) > 1 and order == batch:
            order.reverse()
        for record in order:
            await self._deliver(record)

    async def _deliver(self, record: CallbackRecord) -> None:
        try:
            delay = self._parts.faults.settings.callback_delay
            if delay:
                await asyncio.sleep(delay)
            await self._attempt(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("callback could not be attempted id=%s", record.id)
        finally:
            self.in_flight.discard(record.id)
            self._parts.wake()

    async def _attempt(self, record: CallbackRecord) -> None:
        attempt = record.attempts + 1
        answer = await self._post(record, attempt, "delivery" if attempt == 1 else "retry")
        for _ in range(self._parts.faults.settings.callback_copies - 1):
            await self._post(record, attempt, "duplicate")
        if answer is not None and self._parts.wire.accepts(*answer):
            with self._store.transaction():
                self._store.settle_callback(
                    record.id, attempts=attempt, state="delivered", next_at=None
                )
                self._remove_if_due(record)
            late = self._parts.faults.settings.callback_late_copy_after
            if late is not None:
                self._spawn(self._late_copy(record, attempt, late))
            return
        retry_after = callback_retry_after(
            attempt, self._settings.callback_retry_speed or self._settings.speed
        )
        with self._store.transaction():
            if retry_after is None:
                self._store.settle_callback(
                    record.id, attempts=attempt, state="abandoned", next_at=None
                )
                self._remove_if_due(record)
            else:
                self._store.settle_callback(
                    record.id, attempts=attempt, state="pending", next_at=time.time() + retry_after
                )

    def _remove_if_due(self, record: CallbackRecord) -> None:
        """An outbound callback settled (answered, or given up): its fax may go now."""
        if record.kind != "outbound":
            return
        tx = self._store.transmission_by_guid(record.transmission_guid)
        if tx is not None and not tx.is_inbound and removes(self._settings.removal, tx.status):
            self._store.remove(tx.guid, time.time())

    async def _late_copy(self, record: CallbackRecord, attempt: int, after: float) -> None:
        await asyncio.sleep(after)
        await self._post(record, attempt, "late")

    async def _post(
        self, record: CallbackRecord, attempt: int, reason: str
    ) -> tuple[int, str] | None:
        """One POST; logs the attempt; the receiver's status and text (None: no answer)."""
        assert self._session is not None, "start() first"
        if self._parts.faults.settings.callbacks_lost:
            # Lost on the way: the receiver never sees it, the provider hears nothing.
            self._log(record, attempt, reason, None, "lost (fault switch callbacks_lost)")
            return None
        document = self._store.document(record.document_sha256) if record.document_sha256 else None
        body = callback_body(record, document, self._parts.wire.document_part)
        try:
            async with self._session.post(record.url, data=body) as answer:
                answered = answer.status, (await answer.read()).decode("utf-8", "replace")
        except (aiohttp.ClientError, TimeoutError, OSError) as problem:
            self._log(record, attempt, reason, None, f"{type(problem).__name__}: {problem}"[:500])
            return None
        self._log(record, attempt, reason, answered[0], None)
        return answered

    def _log(
        self,
        record: CallbackRecord,
        attempt: int,
        reason: str,
        status: int | None,
        error: str | None,
    ) -> None:
        with self._store.transaction():
            self._store.record_attempt(
                record.id,
                attempt=attempt,
                reason=reason,
                status=status,
                error=error,
                at=time.time(),
            )
