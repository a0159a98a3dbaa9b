"""The notifier: delivers the outbox, each notification until it is out.

Outcomes write their outbox row in the same transaction as the state change, so no outcome
goes untold. Each cycle takes the due rows, hands each to its handler and records what
happened:

- the handler returned: the row is marked delivered;
- it raised NothingToDeliver (nobody to tell, say a CLI job without a reply address): the
  row is marked delivered, with a log line saying so;
- it raised PermanentFailure, or a MailError with `permanent` set: the row is given up
  (next_attempt_at NULL) and logged at ERROR. It stays in the table with its last_error,
  set aside rather than retried for ever or lost;
- anything else is temporary: the row is tried again after a delay doubling from one
  minute to an hour, shortened by up to a quarter at random so that a burst of failures
  does not come back as a burst.

Which handler: a "report" goes to the handler named after its job's intake ("cli", "smtp",
"folder"), since what a report says is the intake's business; any other kind goes to the
handler named after the kind (an inbound fax's "mail", say). No handler is a temporary
failure: a later faxgate may know the kind.

Delivery is at least once. A cycle holds a lock file next to the database, so two
notifiers on one store (two loops, two processes) never deliver the same row at once
(instances sharing a PostgreSQL store claim the rows instead, with a lease), and
a row marked delivered is never taken again, across restarts too. But if the process dies
after the handler sent its mail and before the row is marked, the mail goes out again after
the restart: a rare duplicate report is better than a lost one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.jobs import Intake, Job, Notification
from faxgate.notify.confirmation import Confirmations, report_name
from faxgate.notify.mailer import Mailer, MailError, keyed
from faxgate.notify.report_text import compose_report
from faxgate.notify.reporter import NothingToDeliver, PermanentFailure, Reporter
from faxgate.runner import run_loop
from faxgate.store import Share, Store

log = logging.getLogger("faxgate.notifier")

REPORT: Final = "report"
DEFAULT_BATCH: Final = 50
DEFAULT_INTERVAL: Final = 30.0  # seconds between cycles when nothing wakes the notifier
_MAX_ERROR_TEXT: Final = 1000


@dataclass(frozen=True, slots=True)
class DeliveryBackoff:
    """Waits between delivery attempts: doubling from `first` up to `maximum`."""

    first: timedelta = timedelta(minutes=1)
    maximum: timedelta = timedelta(hours=1)
    jitter: float = 0.25  # the share of the wait that chance may take off

    def delay(self, failures: int, rand: float) -> timedelta:
        """The wait after the `failures`-th failure in a row (from 1); `rand` in [0, 1).

        Taking off at most a quarter keeps each wait longer than the one before until the
        maximum is reached.
        """
        doublings = min(max(failures - 1, 0), 32)
        base = min(self.first * (1 << doublings), self.maximum)
        return base * (1 - self.jitter * min(max(rand, 0.0), 1.0))


def handler_key(notification: Notification, job: Job | None) -> str | None:
    """The name of the handler for a notification; None for a report without its job."""
    if notification.kind == REPORT:
        return None if job is None else job.intake.value
    return notification.kind


class Notifier:
    def __init__(
        self,
        store: Store,
        handlers: Mapping[str, Reporter],
        *,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[], float] = random.random,
        backoff: DeliveryBackoff = DeliveryBackoff(),
        batch: int = DEFAULT_BATCH,
        interval: float = DEFAULT_INTERVAL,
        lock_path: Path | None = None,
        share: Share | None = None,
    ) -> None:
        self._store = store
        self._handlers = dict(handlers)
        self._clock = clock
        self._rand = rand
        self._backoff = backoff
        self._batch = batch
        self._interval = interval
        # How a cycle holds the outbox: sharing the store with other instances, its rows
        # are claimed; alone, a lock file beside the SQLite store is taken (with a shared
        # store there is no file to lock beside).
        self._hold: Share | Path
        if share is not None:
            self._hold = share
        else:
            self._hold = lock_path or store.path.with_name(store.path.name + ".notifier-lock")
        self._cycle_lock = asyncio.Lock()
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Deliver now rather than at the next tick (call it from the loop's thread)."""
        self._wakeup.set()

    async def run(self) -> None:
        """Deliver until cancelled; a cancel mid-delivery leaves the row due (sent again)."""
        await run_loop(
            self._full_batch, self._idle, self._wakeup, log=log, failed="notifier cycle failed"
        )

    async def _full_batch(self) -> bool:
        taken, _ = await self._cycle()
        return taken >= self._batch  # a full batch: more may be due at once

    async def _idle(self) -> float:
        return self._interval

    async def deliver_once(self) -> int:
        """One cycle: try each due notification (up to the batch); return how many are now
        done (delivered, or found to have nobody to tell)."""
        _, done = await self._cycle()
        return done

    # ------------------------------------------------------------------ one cycle

    async def _cycle(self) -> tuple[int, int]:
        """(rows taken, rows done); (0, 0) when another notifier holds the lock."""
        async with self._cycle_lock:
            if not isinstance(self._hold, Path):
                return await self._deliver_claimed(self._hold)
            # Inline, not in a thread: it never waits, and a cancel between a thread taking
            # the lock and handing it back would leave it held for good.
            lock = _CycleLock.try_acquire(self._hold)
            if lock is None:
                log.debug("notifier cycle skipped: another notifier is delivering")
                return 0, 0
            try:
                due = await asyncio.to_thread(
                    self._store.pending_notifications, self._clock(), self._batch
                )
                done = 0
                for notification in due:
                    if await self._deliver(notification):
                        done += 1
                return len(due), done
            finally:
                lock.release()

    async def _deliver_claimed(self, share: Share) -> tuple[int, int]:
        """Sharing the store: the due rows are claimed, so each is delivered by one
        instance at a time; one left by an instance that died is taken over once its
        lease has run out."""
        due = await asyncio.to_thread(
            self._store.claim_notifications,
            self._clock(),
            self._batch,
            owner=share.owner,
            lease=share.lease,
        )
        done = 0
        for notification in due:
            if await self._deliver(notification):
                done += 1
        return len(due), done

    async def _deliver(self, notification: Notification) -> bool:
        """Hand one notification to its handler and record the result; True when done."""
        job = None
        if notification.job_id is not None:
            job = await asyncio.to_thread(self._store.get_job, notification.job_id)
        key = handler_key(notification, job)
        try:
            if key is None:
                raise PermanentFailure("the job it reports on is no longer in the store")
            handler = self._handlers.get(key)
            if handler is None:
                raise LookupError(f"no handler for {key!r}")
            # Delivered again after a crash, a mail keeps its Message-ID (see mailer.keyed).
            with keyed(f"{notification.job_id or 'inbound'}.{notification.id}"):
                await handler(notification, job)
        except NothingToDeliver as exc:
            await self._done(notification, "skipped")
            log.info("notification not sent %s reason=%s", _about(notification), exc)
            return True
        except Exception as exc:
            if isinstance(exc, PermanentFailure) or (isinstance(exc, MailError) and exc.permanent):
                await self._give_up(notification, exc)
            else:
                await self._retry_later(notification, exc)
            return False
        await self._done(notification, "delivered")
        log.info(
            "notification delivered %s attempt=%d",
            _about(notification),
            notification.attempts + 1,
        )
        return True

    async def _done(self, notification: Notification, result: str) -> None:
        await asyncio.to_thread(self._store.mark_delivered, notification.id, self._clock())
        metrics.notifications.labels(kind=notification.kind, result=result).inc()

    async def _give_up(self, notification: Notification, exc: Exception) -> None:
        error = await self._failed(notification, exc, None, "given_up")
        log.error(
            "notification given up %s attempts=%d error=%s",
            _about(notification),
            notification.attempts + 1,
            error,
        )

    async def _retry_later(self, notification: Notification, exc: Exception) -> None:
        failures = notification.attempts + 1
        delay = self._backoff.delay(failures, self._rand())
        error = await self._failed(notification, exc, self._clock() + delay, "retry")
        log.warning(
            "notification failed %s attempt=%d retry_in=%ds error=%s",
            _about(notification),
            failures,
            delay.total_seconds(),
            error,
        )

    async def _failed(
        self, notification: Notification, exc: Exception, next_at: datetime | None, result: str
    ) -> str:
        """Record a failed delivery, tried again at `next_at` (None: never); the error as
        recorded."""
        error = _error_text(exc)
        await asyncio.to_thread(self._store.mark_delivery_failed, notification.id, error, next_at)
        metrics.notifications.labels(kind=notification.kind, result=result).inc()
        return error


def _about(notification: Notification) -> str:
    """A notification as every log line names it."""
    return f"id={notification.id:d} kind={notification.kind} job={notification.job_id}"


def _error_text(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, MailError | PermanentFailure):
        text = f"{type(exc).__name__}: {text}"
    return text[:_MAX_ERROR_TEXT]


class _CycleLock:
    """An exclusive lock on a file, held for one delivery cycle.

    flock belongs to the open file, so two notifiers in one process exclude each other as
    surely as two processes do; the kernel drops it if the process dies.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def try_acquire(cls, path: Path) -> _CycleLock | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def release(self) -> None:
        os.close(self._fd)


# ---------------------------------------------------------------------------- the default


def report_mail_handler(
    mailer: Mailer, store: Store, confirmations: Confirmations | None = None
) -> Reporter:
    """Mails the default report (faxgate.notify.report_text) to the job's reply address,
    with the confirmation report attached when `confirmations` makes one."""

    async def handle(notification: Notification, job: Job | None) -> None:
        if job is None:
            raise PermanentFailure("the job it reports on is no longer in the store")
        if not job.reply_to:
            raise NothingToDeliver(f"job {job.id} has no reply address")
        documents = await asyncio.to_thread(store.documents, job.id)
        events = await asyncio.to_thread(store.events, job.id)
        # Tell the story up to this outcome, not what a later retry added.
        told = [event for event in events if event.at <= notification.created_at]
        message = compose_report(job, documents, told, notification.payload)
        if confirmations is not None and confirmations.enabled:
            report = await confirmations.report(job, documents, told, notification.payload)
            if report is not None:
                message.add_attachment(
                    report, maintype="application", subtype="pdf", filename=report_name(job)
                )
        await mailer.send(message)

    return handle


def default_handlers(
    mailer: Mailer, store: Store, confirmations: Confirmations | None = None
) -> dict[str, Reporter]:
    """The default report mail for every intake until an intake brings its own reporter."""
    report = report_mail_handler(mailer, store, confirmations)
    return {intake.value: report for intake in (Intake.CLI, Intake.SMTP, Intake.FOLDER)}
