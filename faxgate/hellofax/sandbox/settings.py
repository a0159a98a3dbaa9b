"""How a sandbox is set up: where it listens, whose account it serves, how fast time runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faxgate.hellofax.sandbox.removal import Removal

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


class SandboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="0 picks a free port")
    account_guid: str = Field(pattern=r"^[0-9a-f]{40}$")
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, repr=False)
    state_dir: Path
    speed: float = Field(1.0, description="1.0 is realistic; smaller is faster")
    initial_lines: list[str] = Field(default_factory=lambda: ["14155550100"])
    callback_timeout: float = Field(10.0, gt=0, description="seconds per callback POST")
    removal: Removal = Field(
        Removal.SENT, description="which ended faxes leave GET and the list (removal.py)"
    )
    callback_retry_speed: float | None = Field(
        None, gt=0, description="multiplies the callback retry delays; None: the same as speed"
    )

    @field_validator("speed", mode="before")
    @classmethod
    def _speed_from_preset(cls, value: Any) -> float:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return resolve_speed(value)
        raise ValueError("speed must be a preset name or a number")
