"""One loop shape for every long-running part: wake, cycle, stop.

The dispatcher, the poller, the notifier and each hot folder run the same loop: a cycle;
at once another when the cycle says more may be waiting; otherwise a wait for a wake-up
(`wakeup.set()`, from the event loop) or the part's own deadline. A cycle that fails is
logged and the loop goes on; a cancel ends it at once.

On Python 3.11, `asyncio.wait_for` can swallow a cancellation that arrives as the event is
set: the loop around it then goes on and a shutdown waits for ever. `asyncio.timeout`
does not, so waits go through `wait_for_event`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["run_loop", "wait_for_event"]


async def wait_for_event(event: asyncio.Event, within: float | None) -> bool:
    """Wait until `event` is set or `within` seconds pass (None: no limit); whether it was
    set."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _never() -> bool:
    return False


async def run_loop(
    cycle: Callable[[], Awaitable[bool]],
    idle: Callable[[], Awaitable[float | None]],
    wakeup: asyncio.Event,
    *,
    log: logging.Logger,
    failed: str,
    stopping: Callable[[], bool] = _never,
    pause_after_failure: float | None = None,
) -> None:
    """Run `cycle` until `stopping()` or cancelled.

    `cycle` returns whether more may be waiting now (go round at once); otherwise `idle`
    says how long to wait for a wake-up (None: until woken; 0 or less: no wait). A cycle
    that raises is logged as `failed`, then the loop waits `pause_after_failure` seconds
    (when given) or as long as `idle` says.
    """
    while not stopping():
        wakeup.clear()
        again = False
        try:
            again = await cycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(failed)
            if pause_after_failure is not None:
                await asyncio.sleep(pause_after_failure)
                continue
        if again:
            await asyncio.sleep(0)  # let the rest of the loop run between two cycles
            continue
        wait = await idle()
        if wait is None or wait > 0:
            await wait_for_event(wakeup, wait)
