"""The pause gate: sends stop while the provider limits the rate (429), seems down, or
refuses the account, and resume with one fax tried first.

A 429 pause also ends early once a job leaves the provider's hands (one fewer in flight
than when it paused). Faults in a row (any job) past PROVIDER_DOWN_AFTER pause every send
for a backoff that grows with the streak; an answer from the provider resets it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from faxgate.domain.backoff import Backoff

log = logging.getLogger("faxgate.dispatcher")

# Failures in a row (any job) after which the provider is taken to be down.
PROVIDER_DOWN_AFTER: Final = 3

PauseCause = Literal["rate_limited", "provider_down", "account"]


@dataclass(slots=True)
class _Pause:
    cause: PauseCause
    until: datetime
    in_flight_mark: int | None = None  # jobs at the provider when a 429 paused sends


class PauseGate:
    def __init__(self, clock: Callable[[], datetime], backoff: Backoff) -> None:
        self._clock = clock
        self._backoff = backoff
        self._pause: _Pause | None = None
        self.probing = False  # the next cycle sends one fax to see if the provider is back
        self._fault_streak = 0  # not sent or provider faults in a row, any job
        self._rate_streak = 0  # 429 pauses in a row

    @property
    def until(self) -> datetime | None:
        """When paused sends may resume (a fax to try first), or None when not paused."""
        return None if self._pause is None else self._pause.until

    @property
    def closed(self) -> bool:
        return self._pause is not None

    def room(self, free: int, in_flight: int) -> int | None:
        """How many may go of `free`: None while paused, one to try after a pause."""
        pause = self._pause
        if pause is not None:
            eased = pause.in_flight_mark is not None and in_flight < pause.in_flight_mark
            if self._clock() < pause.until and not eased:
                return None
            self._pause = None
            self.probing = True
            log.info("sends resume with one fax first cause=%s eased=%s", pause.cause, eased)
        return min(free, 1) if self.probing else free

    @property
    def wants_in_flight_mark(self) -> bool:
        """After a 429, how many jobs were at the provider is to be remembered: one fewer
        reopens."""
        pause = self._pause
        return pause is not None and pause.cause == "rate_limited" and pause.in_flight_mark is None

    def mark_in_flight(self, in_flight: int) -> None:
        if self._pause is not None:
            self._pause.in_flight_mark = in_flight

    def pause_for(self, cause: PauseCause, length: timedelta) -> None:
        until = self._clock() + length
        if self._pause is None or until > self._pause.until:
            mark = self._pause.in_flight_mark if self._pause is not None else None
            self._pause = _Pause(cause, until, mark if cause == "rate_limited" else None)
        log.warning("sends paused cause=%s for=%.1fs", cause, length.total_seconds())

    def answered(self) -> None:
        """The provider answered a send: no streak, no probe."""
        self._fault_streak = 0
        self._rate_streak = 0
        self.probing = False

    def fault(self) -> None:
        """A send not taken (not sent, or a provider fault)."""
        self._fault_streak += 1

    def after_fault(self) -> None:
        """Pause when the provider seems down: a probe failed, or faults in a row."""
        if self.probing or self._fault_streak >= PROVIDER_DOWN_AFTER:
            streak = max(1, self._fault_streak - PROVIDER_DOWN_AFTER + 1)
            self.pause_for("provider_down", self._backoff.delay(streak))

    def rate_limit_length(self, retry_after: float | None) -> timedelta:
        """How long a 429 pauses sends: as the provider asks, else a growing backoff."""
        if self._pause is None or self._pause.cause != "rate_limited":
            self._rate_streak += 1
        if retry_after:
            return timedelta(seconds=retry_after)
        # a success between two 429s of one cycle reset the streak
        return self._backoff.delay(max(1, self._rate_streak))
