"""The built-in sandbox's fixed account and its speeds: plain values, no server.

Kept outside the sandbox package so that faxgate's settings can read them without
importing the sandbox's server (aiohttp, pypdf), which a CLI command does not need.
"""

from __future__ import annotations

from pathlib import Path

# Multipliers applied to every provider timing (conversion, transmission, callback retries).
SPEED_PRESETS: dict[str, float] = {
    "realistic": 1.0,  # seconds to minutes per fax, callback retries after 15 min and on
    "quick": 0.05,  # demos: a fax in a few seconds, first callback retry after 45 s
    "test": 0.0005,  # a fax in tens of milliseconds, first callback retries within 2 s
}

# Standalone defaults; they open nothing real, so they may be printed.
DEFAULT_ACCOUNT_GUID = "5a4d0b6e8c1f2a3b4c5d6e7f8091a2b3c4d5e6f7"
DEFAULT_USERNAME = "sandbox@faxgate.invalid"
DEFAULT_PASSWORD = "sandbox-password"  # noqa: S105 - a fixed credential of a local test server
DEFAULT_API_KEY = "sandbox-api-key-0123456789abcdef"  # the v3 face's; as fixed and as local
DEFAULT_STATE_DIR = Path("var/sandbox")
DEFAULT_PORT = 8090


def resolve_speed(value: str | float) -> float:
    """A preset name or a positive number as a speed multiplier."""
    if isinstance(value, str):
        if value in SPEED_PRESETS:
            return SPEED_PRESETS[value]
        try:
            number = float(value)
        except ValueError:
            names = ", ".join(SPEED_PRESETS)
            raise ValueError(f"speed must be one of {names} or a positive number") from None
    else:
        number = float(value)
    if not number > 0:
        raise ValueError("speed must be a positive number")
    return number
