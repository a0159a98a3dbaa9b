"""The provider's side of the rate limit: a sliding window of requests per account, and the
headers every answer carries (`X-RateLimit-Limit`, `X-RateLimit-Remaining`,
`X-Ratelimit-Reset`, the description's `components.headers`)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class RateInspection:
    """What the rate limit saw, for tests and trials (`GET /_sandbox/rate`): how many
    answers were 429 (the window's own, a test-mode send's, too many faxes in flight, the
    `rate_limit_next` fault), and the most requests one window held."""

    limit: int
    window: float
    refused: int = 0
    peak: int = 0
    test_mode_peak: int = 0


class Window:
    """At most `limit` requests in any `seconds`."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._seconds = seconds
        self._clock = clock
        self._taken: deque[float] = deque()
        self.peak = 0

    def take(self) -> bool:
        """Count one request; False (nothing counted) when the window is full."""
        now = self._clock()
        self._forget(now)
        if len(self._taken) >= self.limit:
            return False
        self._taken.append(now)
        self.peak = max(self.peak, len(self._taken))
        return True

    def headers(self) -> dict[str, str]:
        now = self._clock()
        self._forget(now)
        reset = self._taken[0] + self._seconds if self._taken else now
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.limit - len(self._taken)),
            "X-Ratelimit-Reset": str(math.ceil(reset)),
        }

    def _forget(self, now: float) -> None:
        while self._taken and self._taken[0] <= now - self._seconds:
            self._taken.popleft()
