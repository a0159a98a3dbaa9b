"""Staying under the Dropbox Fax API v3's rate limit, before the provider has to say 429.

Pure: no IO, no sleeping. The clock is injected, and the limiter only says how long to
wait; the client does the waiting. One limiter per account serves every caller of the
running daemon (sends, polls, CLI calls through it), so all of them share one budget.

The limit is a sliding window: at most `limit` requests in any `window` seconds (the
provider's help centre gives 100 a minute per account, 10 a minute in test mode; the
description calls X-RateLimit-Limit a count "per hour", so the header is taken as a hint
about the count, never to raise our own limit). When the provider says the budget is spent
(`X-RateLimit-Remaining: 0`, or a 429) nothing more leaves until its `X-Ratelimit-Reset`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from faxgate.clock import MILLISECONDS_ABOVE

__all__ = [
    "LIVE_PER_MINUTE",
    "TEST_MODE_PER_MINUTE",
    "RateLimitHeaders",
    "RateLimiter",
    "read_rate_headers",
]

LIVE_PER_MINUTE = 100
TEST_MODE_PER_MINUTE = 10
_MINUTE = 60.0
# A Reset further off than this is a misreading, not a wait anyone should sit through.
_LONGEST_WAIT = 3600.0


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """What an answer's rate-limit headers say; None for a header absent or unreadable."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # Unix seconds
    retry_after: float | None = None  # seconds, from a Retry-After header

    def wait_from(self, now: float) -> float | None:
        """Seconds to wait from `now` before the next request, if the headers say so:
        Retry-After when given, else the time left until the Reset."""
        if self.retry_after is not None:
            return min(self.retry_after, _LONGEST_WAIT)
        if self.reset_at is not None:
            return min(max(self.reset_at - now, 0.0), _LONGEST_WAIT)
        return None


def read_rate_headers(headers: Mapping[str, str]) -> RateLimitHeaders:
    """Read X-RateLimit-Limit, X-RateLimit-Remaining, X-Ratelimit-Reset (the description
    spells the last with a small L) and Retry-After, whatever their case."""
    lowered = {key.lower(): value for key, value in headers.items()}
    reset = _number(lowered.get("x-ratelimit-reset"))
    if reset is not None and reset > MILLISECONDS_ABOVE:
        reset /= 1000
    limit = _number(lowered.get("x-ratelimit-limit"))
    remaining = _number(lowered.get("x-ratelimit-remaining"))
    retry_after = _number(lowered.get("retry-after"))
    return RateLimitHeaders(
        limit=int(limit) if limit is not None else None,
        remaining=int(remaining) if remaining is not None else None,
        reset_at=reset,
        retry_after=max(retry_after, 0.0) if retry_after is not None else None,
    )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None  # an HTTP date in Retry-After, or garbage: leave it to the caller's policy
    return value if math.isfinite(value) else None


class RateLimiter:
    """At most `limit` requests in any `window` seconds, and none before a server's Reset.

    Use: `wait = limiter.try_take()`; if it is 0 the request may leave now (and is
    counted), else wait that long and ask again (another caller may have taken the slot
    meanwhile). After each answer, `limiter.observe(read_rate_headers(response.headers))`,
    with `rate_limited=True` for a 429.
    """

    def __init__(
        self,
        limit: int = LIVE_PER_MINUTE,
        window: float = _MINUTE,
        *,
        clock: Callable[[], float],
    ) -> None:
        if limit < 1:
            raise ValueError("the limit must allow at least one request")
        if window <= 0:
            raise ValueError("the window must be longer than zero")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._sent: deque[float] = deque()
        self._blocked_until = -math.inf

    @classmethod
    def for_mode(
        cls, *, test_mode: bool, clock: Callable[[], float], window: float = _MINUTE
    ) -> RateLimiter:
        """The provider's published limit for live or test-mode requests (`window`: a
        sandbox's shortened minute)."""
        limit = TEST_MODE_PER_MINUTE if test_mode else LIVE_PER_MINUTE
        return cls(limit, window, clock=clock)

    def delay(self) -> float:
        """Seconds until a request may leave; 0 when one may leave now."""
        now = self._clock()
        self._forget_before(now - self.window)
        wait = max(self._blocked_until - now, 0.0)
        if len(self._sent) >= self.limit:
            wait = max(wait, self._sent[0] + self.window - now)
        return wait

    def try_take(self) -> float:
        """Count a request leaving now and return 0, or return the seconds to wait first."""
        wait = self.delay()
        if wait == 0:
            self._sent.append(self._clock())
        return wait

    def observe(self, headers: RateLimitHeaders, *, rate_limited: bool = False) -> None:
        """Hold everything back until the server's Reset once it says the budget is spent
        (`rate_limited`: the answer was a 429). A 429 that names no time holds back for a
        whole window, after which the provider's own count has surely moved on."""
        now = self._clock()
        if not (rate_limited or headers.retry_after is not None or headers.remaining == 0):
            return
        wait = headers.wait_from(now)
        if wait is None:
            wait = self.window if rate_limited else 0.0
        self._blocked_until = max(self._blocked_until, now + wait)

    def _forget_before(self, cutoff: float) -> None:
        while self._sent and self._sent[0] <= cutoff:
            self._sent.popleft()
