"""What the sandbox's service and its callback sender share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from faxgate.sandbox.faults import FaultInjector
from faxgate.sandbox.state import SandboxStore
from faxgate.sandbox.wire import Wire


@dataclass(frozen=True, slots=True)
class SimulationParts:
    """The simulation's state, the faults switched on, the clock's wake-up (call it when
    something changed), and how this face's callbacks look."""

    store: SandboxStore
    faults: FaultInjector
    wake: Callable[[], None]
    wire: Wire
