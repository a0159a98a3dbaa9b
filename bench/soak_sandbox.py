"""The soak run's provider: the sandbox, in the run's own process, so it outlives every
kill of the daemon (its state directory persists), with faults on and its API requests
counted.

Requests are counted from the sandbox's access log (aiohttp logs one line per request it
answers), by what they were: sends, single lookups, list pages, the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from soak_plan import STEADY_FAULTS, weather

from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.sandbox import FaultSettings, Sandbox
from tests.conftest import SANDBOX_GUID, SANDBOX_PASSWORD, SANDBOX_USERNAME, sandbox_settings

__all__ = ["RequestCounter", "Weather", "fault_weather", "soak_sandbox"]

_ACCESS_LOG = "aiohttp.access"
_SANDBOX_LOGS = ("aiohttp.server", "aiohttp.web", "faxgate.hellofax.sandbox")
_TRANSMISSIONS = re.compile(r"^/v1/Accounts/[^/]+/Transmissions/?(?P<one>[^/?]+)?/?(?:\?.*)?$")


class RequestCounter(logging.Handler):
    """Counts the sandbox's answered /v1 requests by endpoint and by status."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoints: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        line = str(getattr(record, "first_request_line", ""))
        method, _, rest = line.partition(" ")
        path = rest.rsplit(" ", 1)[0]
        if not path.startswith("/v1/"):
            return  # the run's own look at /_sandbox/
        self.endpoints[_endpoint(method, path)] += 1
        self.statuses[str(getattr(record, "response_status", "?"))] += 1

    @property
    def total(self) -> int:
        return sum(self.endpoints.values())


def _endpoint(method: str, path: str) -> str:
    match = _TRANSMISSIONS.match(path)
    if match is None:
        return "other"
    if method == "POST":
        return "send"
    return "get" if match["one"] else "list"


@contextlib.asynccontextmanager
async def soak_sandbox(
    state_dir: Path, *, speed: float, seed: int, callback_url: str | None
) -> AsyncIterator[tuple[Sandbox, RequestCounter]]:
    """A running sandbox whose outbound callbacks go to `callback_url`, with the steady
    faults on; yields it and its request counter. Its own log goes to sandbox.log beside
    its state directory: a daemon killed in the middle of an upload makes aiohttp log the
    broken request, which is expected here."""
    counter = RequestCounter()
    access = logging.getLogger(_ACCESS_LOG)
    level, propagate = access.level, access.propagate
    access.addHandler(counter)
    access.setLevel(logging.INFO)
    access.propagate = False
    log_file = logging.FileHandler(state_dir.parent / "sandbox.log")
    log_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    own_logs = [logging.getLogger(name) for name in _SANDBOX_LOGS]
    for logger in own_logs:
        logger.addHandler(log_file)
        logger.propagate = False
    try:
        async with Sandbox(sandbox_settings(state_dir, speed=speed)) as sandbox:
            if callback_url is not None:  # None: polling only
                async with HelloFaxClient(
                    sandbox.base_url, SANDBOX_GUID, SANDBOX_USERNAME, SANDBOX_PASSWORD
                ) as client:
                    await client.update_account(outbound_url=callback_url)
            counter.endpoints.clear()
            counter.statuses.clear()
            sandbox.faults = FaultSettings(seed=seed, **STEADY_FAULTS)
            yield sandbox, counter
    finally:
        access.removeHandler(counter)
        access.setLevel(level)
        access.propagate = propagate
        for logger in own_logs:
            logger.removeHandler(log_file)
            logger.propagate = True
        log_file.close()


@dataclass
class Weather:
    """The fault changes made so far, by name."""

    changes: Counter[str] = field(default_factory=Counter)


@contextlib.asynccontextmanager
async def fault_weather(sandbox: Sandbox, seed: int) -> AsyncIterator[Weather]:
    """Slow spells and 429 storms on top of the steady faults, until the block ends;
    then the sandbox is calm again (the steady faults stay)."""
    seen = Weather()

    async def change() -> None:
        for step in weather(seed):
            for switch, value in step.switches.items():
                setattr(sandbox.faults, switch, value)  # in place: the seeded draws go on
            seen.changes[step.name] += 1
            await asyncio.sleep(step.lasts)  # the weather's pace, not a synchronisation

    task = asyncio.create_task(change(), name="fault-weather")
    try:
        yield seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sandbox.faults.delay = 0.0
        sandbox.faults.rate_limit_next = 0
