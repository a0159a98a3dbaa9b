"""wait_for_event: set, timed out, and cancelled even as the event is set."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from faxgate.runner import wait_for_event


async def test_set_and_timed_out() -> None:
    event = asyncio.Event()
    assert await wait_for_event(event, 0.01) is False
    event.set()
    assert await wait_for_event(event, 5) is True


async def waiting_loop(event: asyncio.Event, wait: Callable[[], Awaitable[object]]) -> None:
    """What the dispatcher, notifier and hot folders do until they are cancelled."""
    while True:
        event.clear()
        await wait()


async def test_a_cancel_that_meets_the_event_is_never_lost() -> None:
    for _ in range(100):
        event = asyncio.Event()
        task = asyncio.create_task(waiting_loop(event, lambda: wait_for_event(event, 10)))  # noqa: B023
        await asyncio.sleep(0)
        event.set()
        task.cancel()  # in the same step as the wake-up: a shutdown racing new work
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
