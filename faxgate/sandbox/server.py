"""A sandbox server: builds the shared parts from its settings, puts a face (an API's routes
and wire format) in front, starts them in order and stops them in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import web

from faxgate.sandbox.callbacks import CallbackDispatcher
from faxgate.sandbox.engine import Engine
from faxgate.sandbox.faults import FaultInjector, FaultSettings
from faxgate.sandbox.inspection import (
    CallbackAttempt,
    DuplicateSend,
    InspectedTransmission,
)
from faxgate.sandbox.parts import SimulationParts
from faxgate.sandbox.service import SandboxService
from faxgate.sandbox.settings import SandboxSettings
from faxgate.sandbox.state import SandboxStore
from faxgate.sandbox.wire import Wire

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 1.0  # seconds for answers in progress (a slow-answer fault) to finish


@dataclass(frozen=True, slots=True)
class _Running:
    store: SandboxStore
    service: SandboxService
    dispatcher: CallbackDispatcher
    runner: web.AppRunner
    clock: asyncio.Task[None]
    port: int


class SandboxServer(ABC):
    """A provider's API over the shared simulation; state kept in settings.state_dir."""

    api_prefix: str  # the API's path, e.g. /v1

    @abstractmethod
    def wire(self) -> Wire:
        """How this face's callbacks look."""

    @abstractmethod
    def build_app(self, settings: SandboxSettings, service: SandboxService) -> web.Application:
        """The face's routes, with the control routes beside them."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self._injector = FaultInjector()
        self._running: _Running | None = None

    async def start(self) -> None:
        if self._running is not None:
            raise RuntimeError("the sandbox is already running")
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        store = SandboxStore(settings.state_dir)
        try:
            store.ensure_account(settings.account_guid, settings.initial_lines)
            engine = Engine(store, self._injector)
            parts = SimulationParts(store, self._injector, engine.wake, self.wire())
            service = SandboxService(settings, parts)
            dispatcher = CallbackDispatcher(parts, settings)
            engine.attach(service, dispatcher)
            runner = web.AppRunner(
                self.build_app(settings, service), shutdown_timeout=SHUTDOWN_GRACE
            )
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.host, settings.port).start()
            except BaseException:
                await runner.cleanup()
                raise
        except BaseException:
            store.close()
            raise
        await dispatcher.start()
        clock = asyncio.create_task(engine.run(), name="sandbox-clock")
        clock.add_done_callback(_report_stopped_clock)
        port = int(runner.addresses[0][1])
        self._running = _Running(store, service, dispatcher, runner, clock, port)

    async def stop(self) -> None:
        running, self._running = self._running, None
        if running is None:
            return
        await running.runner.cleanup()
        running.clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running.clock
        await running.dispatcher.stop()
        running.store.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """The API's base URL with the port actually bound, e.g. http://127.0.0.1:8090/v1."""
        return f"http://{_url_host(self.settings.host)}:{self._state.port}{self.api_prefix}"

    @property
    def faults(self) -> FaultSettings:
        return self._injector.settings

    @faults.setter
    def faults(self, value: FaultSettings) -> None:
        self._injector.settings = value
        if self._running is not None:
            self._running.service.wake()

    def set_confirmed(self, confirmed: bool) -> None:
        """An unconfirmed account puts the faxes sent from then on on hold (H)."""
        self._state.service.set_confirmed(confirmed)

    def inspect(self) -> list[InspectedTransmission]:
        """Every transmission received, oldest first (GET /_sandbox/transmissions)."""
        return self._state.service.inspect()

    def duplicates(self) -> list[DuplicateSend]:
        """The same document sent to the same number more than once (GET /_sandbox/duplicates)."""
        return self._state.service.duplicates()

    def callback_attempts(self) -> list[CallbackAttempt]:
        """Every callback POST made, in order (GET /_sandbox/callbacks)."""
        return self._state.service.callback_attempts()

    @property
    def _state(self) -> _Running:
        if self._running is None:
            raise RuntimeError("the sandbox is not running")
        return self._running


def _report_stopped_clock(clock: asyncio.Task[None]) -> None:
    if not clock.cancelled() and clock.exception() is not None:
        log.error("the sandbox clock stopped", exc_info=clock.exception())


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):  # noqa: S104 - mapping a wildcard bind to a reachable address
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        return host
    return f"[{host}]" if is_v6 else host
