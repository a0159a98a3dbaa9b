"""A HelloFax-compatible sandbox: the v1 API over real HTTP, with no account needed.

See docs/sandbox.md for running it, its outcome rules and its fault switches.
"""

from faxgate.hellofax.sandbox.inject import inject_inbound
from faxgate.hellofax.sandbox.server import Sandbox
from faxgate.hellofax.sandbox_defaults import (
    DEFAULT_ACCOUNT_GUID,
    DEFAULT_PASSWORD,
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_USERNAME,
    SPEED_PRESETS,
    resolve_speed,
)
from faxgate.sandbox.faults import FaultSettings
from faxgate.sandbox.inject import InjectionRefused
from faxgate.sandbox.inspection import (
    CallbackAttempt,
    DuplicateSend,
    InspectedFile,
    InspectedTransmission,
)
from faxgate.sandbox.settings import SandboxSettings

__all__ = [
    "DEFAULT_ACCOUNT_GUID",
    "DEFAULT_PASSWORD",
    "DEFAULT_PORT",
    "DEFAULT_STATE_DIR",
    "DEFAULT_USERNAME",
    "SPEED_PRESETS",
    "CallbackAttempt",
    "DuplicateSend",
    "FaultSettings",
    "InjectionRefused",
    "InspectedFile",
    "InspectedTransmission",
    "Sandbox",
    "SandboxSettings",
    "inject_inbound",
    "resolve_speed",
]
