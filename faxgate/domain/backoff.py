"""How long to wait before asking the provider again: exponential backoff with jitter.

Pure rules, no IO; the random draw is a parameter (`rand() -> [0, 1)`), so tests choose it.

Every wait lies between `first` and `cap`. Jitter spreads the retries of many faxes that
failed together (a provider outage fails a whole batch at once), so they do not return
together and knock the provider over again. Two shapes:

- full jitter: after the n-th failure in a row the wait is drawn uniformly from
  [first, min(cap, first * 2**n)]: the range doubles with each failure, up to the cap.
- decorrelated jitter: each wait is drawn uniformly from [first, 3 * previous wait],
  capped; it needs the previous wait instead of a count.

See "Exponential Backoff And Jitter" on the AWS architecture blog for the comparison.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Final

__all__ = ["Backoff", "Jitter", "decorrelated_jitter", "full_jitter"]

# 2**64 times any sensible first wait is past every cap; larger exponents add nothing.
_MAX_EXPONENT: Final = 64


class Jitter(StrEnum):
    FULL = "full"
    DECORRELATED = "decorrelated"


def _bounds(first: timedelta, cap: timedelta) -> tuple[float, float]:
    low = first.total_seconds()
    if low < 0:
        raise ValueError("the first wait must not be negative")
    # A cap below the first wait would make the range empty: the first wait wins.
    return low, max(low, cap.total_seconds())


def _draw(rand: Callable[[], float]) -> float:
    value = rand()
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"rand() must return a number in [0, 1], got {value!r}")
    return value


def full_jitter(
    failures: int,
    *,
    first: timedelta,
    cap: timedelta,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """The wait after `failures` failures in a row (1 for the first failure)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    low, high = _bounds(first, cap)
    ceiling = min(high, low * 2.0 ** min(failures, _MAX_EXPONENT))
    return timedelta(seconds=low + _draw(rand) * (ceiling - low))


def decorrelated_jitter(
    previous: timedelta | None,
    *,
    first: timedelta,
    cap: timedelta,
    rand: Callable[[], float] = random.random,
) -> timedelta:
    """The wait that follows `previous` (None before the first wait)."""
    low, high = _bounds(first, cap)
    last = low if previous is None else max(low, previous.total_seconds())
    ceiling = min(high, 3.0 * last)
    return timedelta(seconds=low + _draw(rand) * (ceiling - low))


@dataclass(frozen=True, slots=True)
class Backoff:
    """A backoff policy: its bounds, its jitter and its source of randomness."""

    first: timedelta
    cap: timedelta
    jitter: Jitter = Jitter.FULL
    rand: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        _bounds(self.first, self.cap)

    def delay(self, failures: int, previous: timedelta | None = None) -> timedelta:
        """The wait after `failures` failures in a row; `previous` is the last wait, which
        decorrelated jitter grows from (without it, it starts over from `first`)."""
        if failures < 1:
            raise ValueError("failures counts from 1")
        if self.jitter is Jitter.DECORRELATED:
            return decorrelated_jitter(previous, first=self.first, cap=self.cap, rand=self.rand)
        return full_jitter(failures, first=self.first, cap=self.cap, rand=self.rand)
