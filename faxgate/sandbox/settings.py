"""How a sandbox is set up: where it listens, whose account it serves, how fast time runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The fixed values live apart so that faxgate's settings can read them without this package.
from faxgate.hellofax.sandbox_defaults import (
    DEFAULT_PASSWORD,
    DEFAULT_PORT,
    DEFAULT_USERNAME,
    resolve_speed,
)
from faxgate.sandbox.removal import Removal

# The v3 sandbox's API key; it opens nothing real, so it may be printed.
DEFAULT_API_KEY = "sandbox-api-key-0123456789abcdef"


class SandboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="0 picks a free port")
    account_guid: str = Field(pattern=r"^[0-9a-f]{40}$")
    username: str = Field(DEFAULT_USERNAME, min_length=1, description="v1 Basic auth")
    password: str = Field(DEFAULT_PASSWORD, min_length=1, repr=False)
    api_key: str = Field(DEFAULT_API_KEY, min_length=1, repr=False, description="v3 Basic auth")
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

    # v3: requests allowed per window and account; sends in test mode have their own budget.
    rate_limit: int = Field(100, ge=1)
    test_mode_rate_limit: int = Field(10, ge=1)
    rate_window: float = Field(60.0, gt=0, description="seconds")

    @field_validator("speed", mode="before")
    @classmethod
    def _speed_from_preset(cls, value: Any) -> float:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return resolve_speed(value)
        raise ValueError("speed must be a preset name or a number")
