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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from faxgate.clock import MILLISECONDS_ABOVE

__all__ = [
    "LIVE_PER_MINUTE",
    "TEST_MODE_PER_MINUTE",
    "RateLimitHeaders",
    "RateLimiter",
    "Turn",
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
    spells the last with a small L) and Retry-After, whatever their case. The remaining
    count is also read as X-RateLimit-Limit-Remaining, the spelling HelloSign's API has
    been seen to answer with instead of the description's."""
    lowered = {key.lower(): value for key, value in headers.items()}
    reset = _number(lowered.get("x-ratelimit-reset"))
    if reset is not None and reset > MILLISECONDS_ABOVE:
        reset /= 1000
    limit = _number(lowered.get("x-ratelimit-limit"))
    remaining = _number(lowered.get("x-ratelimit-remaining"))
    if remaining is None:
        remaining = _number(lowered.get("x-ratelimit-limit-remaining"))
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


@dataclass(frozen=True, slots=True)
class Turn:
    """The limiter's answer to a request that wants to leave: wait `wait` seconds and ask
    again, or (wait 0) go now as `ticket`, and hand the ticket back with the answer."""

    wait: float
    ticket: int | None = None


class RateLimiter:
    """At most `limit` requests in any `window` seconds, none before a server's Reset, and
    none beyond what the server says remains.

    Use: `turn = limiter.take()`; if `turn.wait` is 0 the request may leave now (and is
    counted), else wait that long and ask again (another caller may have taken the slot
    meanwhile). After the answer (or the failure), `limiter.finish(turn.ticket,
    read_rate_headers(response.headers), rate_limited=status == 429)`.

    A request counts from when it leaves until a window after its answer came: the
    provider counts it when it arrives, somewhere in between, so counting it to the end
    keeps any window of the provider's within the limit, however long answers take.
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
        # ticket -> when it last counted: when it left while in flight, else its answer.
        self._stamps: dict[int, float] = {}
        self._in_flight: set[int] = set()
        self._tickets = 0
        self._blocked_until = -math.inf
        # What the provider last said remains (other processes on the account count
        # against it too), and until when; the ticket of the answer that said it.
        self._budget: tuple[int, float] | None = None
        self._budget_ticket = -1
        # Whether the provider's answers tell their remaining count: then a burst after a
        # quiet spell first sends one request and learns from its answer.
        self._told = False

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
        if len(self._stamps) >= self.limit:
            answered = [at for ticket, at in self._stamps.items() if ticket not in self._in_flight]
            # Every slot held by a request still in flight: look again shortly.
            free_at = min(answered) + self.window - now if answered else self.window / 20
            wait = max(wait, free_at)
        if self._budget is not None:
            remaining, until = self._budget
            if now >= until:
                self._budget = None
            elif remaining <= 0:
                wait = max(wait, until - now)
        if self._budget is None and self._told and self._in_flight:
            # The provider's last word has lapsed and others on the account (a command in
            # another process) may have spent its budget meanwhile: one request asks first.
            wait = max(wait, self.window / 20)
        return wait

    def take(self) -> Turn:
        """A turn: count a request leaving now (in flight until `finish`), or the wait."""
        wait = self.delay()
        if wait > 0:
            return Turn(wait)
        ticket = self._count_one()
        self._in_flight.add(ticket)
        return Turn(0.0, ticket)

    def try_take(self) -> float:
        """Count a request leaving and answered now and return 0, or return the wait."""
        wait = self.delay()
        if wait == 0:
            self._count_one()
        return wait

    def finish(
        self, ticket: int | None, headers: RateLimitHeaders, *, rate_limited: bool = False
    ) -> None:
        """The request `ticket` is answered (or failed): it counts from now, and what the
        answer's headers say is learnt."""
        if ticket is not None and ticket in self._stamps:
            self._stamps[ticket] = self._clock()
            self._in_flight.discard(ticket)
        self.observe(headers, rate_limited=rate_limited, ticket=ticket)

    def observe(
        self, headers: RateLimitHeaders, *, rate_limited: bool = False, ticket: int | None = None
    ) -> None:
        """Learn from an answer's headers.

        - X-RateLimit-Remaining with its Reset: the provider's own count, which the CLI's
          calls and anything else on the account share. Until the Reset no more than that
          leave (less the requests that left after the one answered, which it may not
          have counted yet). The latest request's answer is the one believed. Once that
          word has lapsed, one request leaves alone and its answer tells the count again
          (for a provider whose answers carry it).
        - A spent budget (Remaining 0) or a 429 (`rate_limited`) holds everything back
          until the Reset, or Retry-After; a 429 that names no time holds back for a whole
          window, after which the provider's own count has surely moved on.

        X-RateLimit-Limit is not taken as our limit: the description calls it a count per
        hour, the help centre gives a count per minute; the remaining count says enough.
        """
        now = self._clock()
        if ticket is None:
            ticket = self._tickets - 1  # a caller without tickets: as the latest answer
        if headers.remaining is not None:
            self._told = True
        if headers.remaining is not None and ticket >= self._budget_ticket:
            left_after = self._tickets - 1 - ticket
            until = headers.reset_at if headers.reset_at is not None else now + self.window
            until = min(until, now + _LONGEST_WAIT)
            self._budget = (headers.remaining - left_after, until)
            self._budget_ticket = ticket
        if not (rate_limited or headers.retry_after is not None or headers.remaining == 0):
            return
        wait = headers.wait_from(now)
        if wait is None:
            wait = self.window if rate_limited else 0.0
        self._blocked_until = max(self._blocked_until, now + wait)

    def _count_one(self) -> int:
        ticket = self._tickets
        self._tickets += 1
        self._stamps[ticket] = self._clock()
        if self._budget is not None:
            remaining, until = self._budget
            self._budget = (remaining - 1, until)
        return ticket

    def _forget_before(self, cutoff: float) -> None:
        gone = [
            ticket
            for ticket, at in self._stamps.items()
            if at <= cutoff and ticket not in self._in_flight
        ]
        for ticket in gone:
            del self._stamps[ticket]
