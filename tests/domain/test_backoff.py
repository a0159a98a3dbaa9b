from __future__ import annotations

import random
from datetime import timedelta

import pytest

from faxgate.domain.backoff import Backoff, Jitter, decorrelated_jitter, full_jitter

FIRST = timedelta(seconds=5)
CAP = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("failures", "highest"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (7, 600.0), (50, 600.0), (10_000, 600.0)],
)
def test_full_jitter_range_doubles_from_first_up_to_the_cap(failures: int, highest: float) -> None:
    lowest = full_jitter(failures, first=FIRST, cap=CAP, rand=lambda: 0.0)
    top = full_jitter(failures, first=FIRST, cap=CAP, rand=lambda: 1.0)
    assert lowest == FIRST
    assert top.total_seconds() == pytest.approx(highest)


def test_full_jitter_draws_within_its_bounds_and_spreads() -> None:
    source = random.Random(1234)
    for failures in range(1, 12):
        draws = [
            full_jitter(failures, first=FIRST, cap=CAP, rand=source.random) for _ in range(200)
        ]
        ceiling = min(CAP, FIRST * 2**failures)
        assert all(FIRST <= wait <= ceiling for wait in draws)
        # Jitter: faxes that failed together do not come back together.
        assert len(set(draws)) > 150


def test_the_random_source_decides_where_in_the_range() -> None:
    assert full_jitter(1, first=FIRST, cap=CAP, rand=lambda: 0.5) == timedelta(seconds=7.5)
    assert full_jitter(3, first=FIRST, cap=CAP, rand=lambda: 0.25) == timedelta(seconds=13.75)


def test_waits_grow_with_the_failures_for_the_same_draw() -> None:
    waits = [full_jitter(n, first=FIRST, cap=CAP, rand=lambda: 0.7) for n in range(1, 12)]
    assert waits == sorted(waits)
    assert waits[0] < waits[3] < waits[-1] <= CAP


def test_decorrelated_jitter_grows_from_the_previous_wait_within_bounds() -> None:
    assert decorrelated_jitter(None, first=FIRST, cap=CAP, rand=lambda: 1.0) == FIRST * 3
    assert decorrelated_jitter(None, first=FIRST, cap=CAP, rand=lambda: 0.0) == FIRST
    grown = decorrelated_jitter(timedelta(seconds=40), first=FIRST, cap=CAP, rand=lambda: 1.0)
    assert grown == timedelta(seconds=120)
    capped = decorrelated_jitter(timedelta(minutes=9), first=FIRST, cap=CAP, rand=lambda: 1.0)
    assert capped == CAP

    source = random.Random(99)
    previous: timedelta | None = None
    for _ in range(500):
        previous = decorrelated_jitter(previous, first=FIRST, cap=CAP, rand=source.random)
        assert FIRST <= previous <= CAP


def test_a_cap_below_the_first_wait_leaves_the_first_wait() -> None:
    for failures in (1, 5, 40):
        wait = full_jitter(failures, first=FIRST, cap=timedelta(seconds=1), rand=lambda: 1.0)
        assert wait == FIRST


def test_a_zero_first_wait_means_no_wait() -> None:
    assert full_jitter(9, first=timedelta(0), cap=CAP, rand=lambda: 1.0) == timedelta(0)


def test_the_policy_object_uses_its_jitter_and_its_random_source() -> None:
    full = Backoff(FIRST, CAP, rand=lambda: 1.0)
    assert full.delay(2) == timedelta(seconds=20)
    decorrelated = Backoff(FIRST, CAP, Jitter.DECORRELATED, rand=lambda: 1.0)
    assert decorrelated.delay(1) == timedelta(seconds=15)
    assert decorrelated.delay(2, previous=timedelta(seconds=15)) == timedelta(seconds=45)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_a_random_source_out_of_range_is_refused(value: float) -> None:
    with pytest.raises(ValueError, match="rand"):
        full_jitter(1, first=FIRST, cap=CAP, rand=lambda: value)


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="failures"):
        full_jitter(0, first=FIRST, cap=CAP)
    with pytest.raises(ValueError, match="failures"):
        Backoff(FIRST, CAP).delay(0)
    with pytest.raises(ValueError, match="negative"):
        Backoff(timedelta(seconds=-1), CAP)
