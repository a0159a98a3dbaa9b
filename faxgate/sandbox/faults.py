"""Faults on demand: what can go wrong between a client and the provider, switched on by tests.

FaultSettings is the switchboard (also POST /_sandbox/faults); FaultInjector makes the
decisions, from a seeded random generator so that a test run can be repeated exactly.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FaultSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int | None = Field(None, description="seeds every random choice below")
    # Requests to /v1 answered with an error instead of being handled.
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_statuses: list[int] = Field(default_factory=lambda: [500, 503], min_length=1)
    errors_only_for_sends: bool = False
    # Seconds an answer is held back after the request was handled (a send is accepted).
    delay: float = Field(0.0, ge=0.0)
    delay_only_for_sends: bool = False
    # Sends whose connection is closed without an answer, after the fax was accepted.
    drop_after_upload_rate: float = Field(0.0, ge=0.0, le=1.0)
    drop_after_upload_next: int = Field(0, ge=0, description="the next N sends, counted down")
    # A 429 storm: the next N sends answer 429, whatever is pending.
    rate_limit_next: int = Field(0, ge=0)
    # Faxes stay where they are (P or T) until this is switched off again.
    stall_faxes: bool = False
    # A fax machine answers one call at a time: a fax sent while another to the same
    # number is still at the provider finds the line busy (E/B).
    one_call_per_line: bool = False
    # Callbacks.
    callback_copies: int = Field(1, ge=1, description="each delivery is posted this many times")
    callback_delay: float = Field(0.0, ge=0.0, description="seconds before each delivery")
    callback_shuffle: bool = False  # callbacks due together are delivered in another order
    callback_shuffle_window: float = Field(0.2, gt=0.0, description="seconds to gather them")
    callback_late_copy_after: float | None = Field(
        None, ge=0.0, description="after a delivery, one more copy this many seconds later"
    )
    callbacks_lost: bool = Field(
        False, description="every callback POST is lost: retried on schedule, then given up"
    )

    @field_validator("error_statuses")
    @classmethod
    def _statuses_are_errors(cls, statuses: list[int]) -> list[int]:
        if any(not 400 <= status <= 599 for status in statuses):
            raise ValueError("error statuses must be 4xx or 5xx")
        return statuses


class FaultInjector:
    """Decides, request by request, which fault (if any) strikes."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self._settings = settings or FaultSettings()
        self._seeded_with: int | None = None
        self._random = random.Random()  # noqa: S311 - fault injection, not security
        self._reseed_if_needed()

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    @settings.setter
    def settings(self, value: FaultSettings) -> None:
        self._settings = value
        self._seeded_with = None
        self._reseed_if_needed()

    def merge(self, changes: dict[str, Any]) -> FaultSettings:
        """Apply some switches (validated), keep the others."""
        merged = FaultSettings.model_validate({**self._settings.model_dump(), **changes})
        if "seed" in changes:
            self._seeded_with = None
        self._settings = merged
        self._reseed_if_needed()
        return merged

    def reset(self) -> FaultSettings:
        self.settings = FaultSettings()
        return self._settings

    @property
    def random(self) -> random.Random:
        self._reseed_if_needed()
        return self._random

    def error_status(self, *, is_send: bool) -> int | None:
        """The status to answer instead of handling the request, or None."""
        settings = self._settings
        if settings.error_rate <= 0 or (settings.errors_only_for_sends and not is_send):
            return None
        if self.random.random() >= settings.error_rate:
            return None
        return self.random.choice(settings.error_statuses)

    def answer_delay(self, *, is_send: bool) -> float:
        settings = self._settings
        if settings.delay_only_for_sends and not is_send:
            return 0.0
        return settings.delay

    def take_rate_limit(self) -> bool:
        """True when this send belongs to a 429 storm."""
        if self._settings.rate_limit_next > 0:
            self._settings.rate_limit_next -= 1
            return True
        return False

    def take_drop_after_upload(self) -> bool:
        """True when this accepted send's connection is to be dropped."""
        settings = self._settings
        if settings.drop_after_upload_next > 0:
            settings.drop_after_upload_next -= 1
            return True
        return settings.drop_after_upload_rate > 0 and (
            self.random.random() < settings.drop_after_upload_rate
        )

    def _reseed_if_needed(self) -> None:
        seed = self._settings.seed
        if seed is not None and seed != self._seeded_with:
            self._random.seed(seed)
            self._seeded_with = seed
