"""Waiting for an event with a deadline, in a loop that must stay cancellable.

On Python 3.11, `asyncio.wait_for` can swallow a cancellation that arrives as the event is
set: the loop around it then goes on and a shutdown waits for ever. `asyncio.timeout`
does not.
"""

from __future__ import annotations

import asyncio

__all__ = ["wait_for_event"]


async def wait_for_event(event: asyncio.Event, within: float | None) -> bool:
    """Wait until `event` is set or `within` seconds pass (None: no limit); whether it was
    set."""
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True
