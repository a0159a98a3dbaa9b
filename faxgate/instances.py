"""An instance among several sharing one PostgreSQL store: its leases kept alive, and
word from the others that there is work.

- The heartbeat renews the leases this instance holds (faxgate.store.sharing) every third
  of a lease, so a late or lost renewal loses nothing; on a clean stop it gives them all
  up, so the others take its work at once instead of when the leases run out. It also
  writes the instance's row in `instances` (its host, process, version, when it started,
  when last seen), which the cluster view reads; a clean stop marks it stopped.
- The listener waits on the store's wake-ups (LISTEN on a connection of its own) in a
  thread, and wakes the parts that have work: "jobs" the dispatcher and the poller,
  "outbox" the notifier. The parts still look on their own now and then: a wake-up lost
  with a dropped connection only makes them later, never loses work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

from faxgate import __version__
from faxgate.clock import utc_now
from faxgate.runner import wait_for_event
from faxgate.store import Share, Store
from faxgate.store.db import Wakeups

log = logging.getLogger("faxgate.instances")

# How long the listener waits at a time: also how long a stop waits for it.
LISTEN_SLICE: Final = 0.5  # seconds


@contextlib.asynccontextmanager
async def sharing(
    store: Store,
    share: Share,
    wake: Mapping[str, Sequence[Callable[[], None]]],
    *,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[None]:
    """Keep `share`'s leases alive and pass the others' wake-ups on to `wake` (by what
    came: "jobs", "outbox") while the block runs; then give the leases up."""
    stop = asyncio.Event()
    started_at = clock()
    await _seen(store, share, started_at, started_at)
    heartbeat = asyncio.create_task(_renew(store, share, clock, stop, started_at), name="heartbeat")
    listener = _Listener(store, wake, asyncio.get_running_loop())
    await asyncio.to_thread(listener.start)
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await asyncio.to_thread(listener.stop)
        try:
            jobs = await asyncio.to_thread(store.release_claims, share.owner)
            notes = await asyncio.to_thread(store.release_notifications, share.owner)
            log.info(
                "leases given up instance=%s jobs=%d notifications=%d", share.owner, jobs, notes
            )
        except Exception as exc:  # they run out on their own
            log.warning("leases not given up instance=%s error=%s", share.owner, exc)
        try:
            await asyncio.to_thread(store.instance_stopped, share.owner, clock())
        except Exception as exc:  # shown as gone once a few leases pass unseen
            log.warning("instance not marked stopped instance=%s error=%s", share.owner, exc)


async def _seen(store: Store, share: Share, started_at: datetime, now: datetime) -> None:
    try:
        await asyncio.to_thread(
            store.instance_seen, share, version=__version__, started_at=started_at, now=now
        )
    except Exception as exc:  # the next heartbeat writes it again
        log.warning("instance not recorded instance=%s error=%s", share.owner, exc)


async def _renew(
    store: Store,
    share: Share,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
    started_at: datetime,
) -> None:
    every = share.renew_every.total_seconds()
    last_renewed = clock()
    while not await wait_for_event(stop, every):
        now = clock()
        await _seen(store, share, started_at, now)
        try:
            await asyncio.to_thread(store.renew_claims, share.owner, now, share.lease)
        except Exception as exc:  # the database away for a moment: the next renewal may do
            since = now - last_renewed
            level = logging.ERROR if since >= share.lease else logging.WARNING
            log.log(
                level,
                "leases not renewed instance=%s for=%.1fs lease=%.1fs error=%s",
                share.owner,
                since.total_seconds(),
                share.lease.total_seconds(),
                exc,
            )
            continue
        last_renewed = now


class _Listener:
    """The store's wake-ups heard in a thread of their own, handed to the event loop."""

    def __init__(
        self,
        store: Store,
        wake: Mapping[str, Sequence[Callable[[], None]]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = store
        self._wake = wake
        self._loop = loop
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="wakeups", daemon=True)
        self._wakeups: Wakeups | None = None

    def start(self) -> None:
        try:
            self._wakeups = self._store.wakeups()
        except Exception as exc:  # polling still finds the work
            log.warning("not listening for other instances' work error=%s", exc)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        if self._wakeups is not None:
            with contextlib.suppress(Exception):
                self._wakeups.close()

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._wakeups is None:
                    self._wakeups = self._store.wakeups()
                came = self._wakeups.wait(LISTEN_SLICE)
            except Exception as exc:
                log.debug("wake-ups not heard error=%s", exc)
                self._stopping.wait(LISTEN_SLICE)
                continue
            for what in came:
                for wake in self._wake.get(what, ()):
                    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                        self._loop.call_soon_threadsafe(wake)
