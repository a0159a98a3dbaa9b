"""The v3 rate limiter on a fake clock: under the provider's rate, and honouring its Reset."""

from __future__ import annotations

import random

import pytest

from faxgate.dropbox_fax.ratelimit import (
    LIVE_PER_MINUTE,
    TEST_MODE_PER_MINUTE,
    RateLimiter,
    RateLimitHeaders,
    read_rate_headers,
)

START = 1_750_000_000.0


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _run(limiter: RateLimiter, clock: FakeClock, requests: int) -> list[float]:
    """Send `requests` as fast as the limiter allows; the times they left."""
    sent: list[float] = []
    while len(sent) < requests:
        wait = limiter.try_take()
        if wait == 0:
            sent.append(clock())
        else:
            clock.advance(wait)
    return sent


def _most_in_any_window(times: list[float], window: float) -> int:
    most = 0
    for index, start in enumerate(times):
        most = max(most, sum(1 for later in times[index:] if later < start + window))
    return most


def test_the_published_limits() -> None:
    clock = FakeClock()

    assert RateLimiter.for_mode(test_mode=False, clock=clock).limit == LIVE_PER_MINUTE == 100
    assert RateLimiter.for_mode(test_mode=True, clock=clock).limit == TEST_MODE_PER_MINUTE == 10


def test_a_burst_leaves_at_once_up_to_the_limit_then_waits_for_the_oldest() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, 60.0, clock=clock)

    assert [limiter.try_take() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.advance(20)
    assert limiter.try_take() == pytest.approx(40.0)
    clock.advance(40)
    assert limiter.try_take() == 0.0


def test_a_wait_reported_takes_no_slot() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock=clock)
    limiter.try_take()

    for _ in range(5):
        assert limiter.try_take() > 0

    clock.advance(60)
    assert limiter.try_take() == 0.0


@pytest.mark.parametrize("test_mode", [False, True])
def test_a_thousand_requests_never_exceed_the_rate_in_any_minute(test_mode: bool) -> None:
    clock = FakeClock()
    limiter = RateLimiter.for_mode(test_mode=test_mode, clock=clock)

    sent = _run(limiter, clock, 1000)

    assert _most_in_any_window(sent, 60.0) == limiter.limit
    # And no slower than the rate allows: 1,000 requests take just under 1000/limit minutes.
    assert sent[-1] - sent[0] == pytest.approx((1000 // limiter.limit - 1) * 60.0, abs=60.0)


def test_callers_arriving_at_random_times_stay_under_the_rate() -> None:
    chance = random.Random(17)
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock=clock)
    sent: list[float] = []

    for _ in range(300):
        clock.advance(chance.uniform(0, 4))
        while (wait := limiter.try_take()) > 0:
            clock.advance(wait)
        sent.append(clock())

    assert _most_in_any_window(sent, 60.0) <= 10


def test_a_spent_budget_holds_everything_until_the_reset() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    limiter.try_take()

    limiter.observe(RateLimitHeaders(limit=100, remaining=0, reset_at=START + 30))

    assert limiter.delay() == pytest.approx(30.0)
    clock.advance(29)
    assert limiter.try_take() == pytest.approx(1.0)
    clock.advance(1)
    assert limiter.try_take() == 0.0


def test_a_budget_not_yet_spent_changes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)

    limiter.observe(RateLimitHeaders(limit=100, remaining=1, reset_at=START + 30))

    assert limiter.delay() == 0.0


def test_a_429_holds_back_for_its_retry_after_or_else_a_whole_window() -> None:
    clock = FakeClock()
    told = RateLimiter(100, 60.0, clock=clock)
    silent = RateLimiter(100, 60.0, clock=clock)

    told.observe(RateLimitHeaders(retry_after=5), rate_limited=True)
    silent.observe(RateLimitHeaders(), rate_limited=True)

    assert told.delay() == pytest.approx(5.0)
    assert silent.delay() == pytest.approx(60.0)


def test_a_later_answer_never_shortens_a_hold() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)

    limiter.observe(RateLimitHeaders(remaining=0, reset_at=START + 30))
    limiter.observe(RateLimitHeaders(remaining=0, reset_at=START + 10))

    assert limiter.delay() == pytest.approx(30.0)


def test_a_reset_in_the_past_holds_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)

    limiter.observe(RateLimitHeaders(remaining=0, reset_at=START - 30))

    assert limiter.delay() == 0.0


def test_reading_the_headers_whatever_their_case() -> None:
    headers = {
        "x-ratelimit-limit": "100",
        "X-RATELIMIT-REMAINING": "99",
        "X-Ratelimit-Reset": "1430170900",
        "Retry-After": "12",
    }

    assert read_rate_headers(headers) == RateLimitHeaders(
        limit=100, remaining=99, reset_at=1430170900.0, retry_after=12.0
    )


def test_unreadable_headers_are_absent() -> None:
    headers = {
        "X-RateLimit-Limit": "lots",
        "X-RateLimit-Remaining": "nan",
        "X-Ratelimit-Reset": "",
        "Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT",
    }

    assert read_rate_headers(headers) == RateLimitHeaders()
    assert read_rate_headers({}).wait_from(START) is None


def test_a_reset_in_milliseconds_is_read_as_seconds() -> None:
    assert read_rate_headers({"X-Ratelimit-Reset": "1430170900000"}).reset_at == 1430170900.0


def test_a_wait_is_never_absurdly_long() -> None:
    far = RateLimitHeaders(reset_at=START + 10 * 86400)

    assert far.wait_from(START) == 3600.0
    assert RateLimitHeaders(retry_after=86400).wait_from(START) == 3600.0


@pytest.mark.parametrize(("limit", "window"), [(0, 60.0), (10, 0.0)])
def test_a_limiter_that_could_never_send_is_refused(limit: int, window: float) -> None:
    with pytest.raises(ValueError, match="must"):
        RateLimiter(limit, window, clock=FakeClock())


# --- learning from the provider's count, and counting a request until its answer ----------


def test_the_providers_remaining_count_is_kept_to_until_its_reset() -> None:
    # Another process on the account (a CLI call) spent most of the budget: the answer
    # says 2 remain for 30 s, though this limiter counted only one request of its own.
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    turn = limiter.take()
    limiter.finish(turn.ticket, RateLimitHeaders(limit=100, remaining=2, reset_at=START + 30))

    assert [limiter.try_take(), limiter.try_take()] == [0.0, 0.0]
    assert limiter.try_take() == pytest.approx(30.0)
    clock.advance(30)
    assert limiter.try_take() == 0.0  # the provider's window has reset; our own still has room


def test_requests_that_left_after_the_one_answered_are_taken_off_its_count() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    first = limiter.take()
    for _ in range(3):  # three more leave before the first one's answer comes
        assert limiter.take().wait == 0.0
    limiter.finish(first.ticket, RateLimitHeaders(remaining=4, reset_at=START + 20))

    assert limiter.try_take() == 0.0  # 4 - 3 = 1 left
    assert limiter.try_take() == pytest.approx(20.0)


def test_an_older_answer_arriving_late_does_not_undo_a_newer_one() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    older, newer = limiter.take(), limiter.take()
    limiter.finish(newer.ticket, RateLimitHeaders(remaining=0, reset_at=START + 10))
    limiter.finish(older.ticket, RateLimitHeaders(remaining=50, reset_at=START + 10))

    assert limiter.delay() == pytest.approx(10.0)


def test_a_request_counts_until_a_window_after_its_answer() -> None:
    # The provider counts a request when it arrives, which may be as late as its answer:
    # a slot frees a window after the answer, not after the request left.
    clock = FakeClock()
    limiter = RateLimiter(2, 10.0, clock=clock)
    slow, quick = limiter.take(), limiter.take()
    clock.advance(1)
    limiter.finish(quick.ticket, RateLimitHeaders())
    clock.advance(8)  # the slow one is answered after 9 s
    limiter.finish(slow.ticket, RateLimitHeaders())

    assert limiter.delay() == pytest.approx(2.0)  # the quick one leaves the window at 11
    clock.advance(2)
    assert limiter.take().wait == 0.0
    assert limiter.delay() == pytest.approx(8.0)  # the slow one at 19


def test_while_every_slot_is_in_flight_it_looks_again_shortly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 60.0, clock=clock)
    limiter.take()
    clock.advance(120)  # still no answer: it still counts
    assert 0 < limiter.delay() <= 3.0


def test_a_burst_with_slow_answers_never_puts_more_than_the_limit_in_a_provider_window() -> None:
    # Simulated: each request arrives at the provider a random time between leaving and
    # its answer; the provider's sliding window must never hold more than the limit.
    clock = FakeClock()
    limiter = RateLimiter(10, 60.0, clock=clock)
    chance = random.Random(11)
    arrivals: list[float] = []
    pending: list[tuple[float, int]] = []  # (answer time, ticket)
    while len(arrivals) < 300:
        turn = limiter.take()
        if turn.wait == 0:
            latency = chance.uniform(0, 20)
            arrivals.append(clock() + chance.uniform(0, latency))
            pending.append((clock() + latency, turn.ticket or 0))
            continue
        step = turn.wait
        if pending:
            step = min(step, min(at for at, _ in pending) - clock())
        clock.advance(max(step, 0.0))
        for answered in [p for p in pending if p[0] <= clock()]:
            pending.remove(answered)
            limiter.finish(answered[1], RateLimitHeaders())
    assert _most_in_any_window(sorted(arrivals), 60.0) <= 10


def test_the_remaining_count_under_the_name_seen_on_the_wire() -> None:
    headers = {"x-ratelimit-limit": "2000", "x-ratelimit-limit-remaining": "1999"}
    assert read_rate_headers(headers).remaining == 1999
    both = {"X-RateLimit-Remaining": "5", "X-RateLimit-Limit-Remaining": "7"}
    assert read_rate_headers(both).remaining == 5  # the description's name first


def test_once_the_providers_word_has_lapsed_one_request_asks_before_the_others() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    first = limiter.take()
    limiter.finish(first.ticket, RateLimitHeaders(remaining=99, reset_at=START + 60))
    clock.advance(61)  # a quiet spell: what the provider said no longer holds
    probe = limiter.take()
    assert probe.wait == 0.0
    assert limiter.take().wait > 0  # the others wait for the probe's answer
    limiter.finish(probe.ticket, RateLimitHeaders(remaining=1, reset_at=START + 90))
    assert limiter.take().wait == 0.0
    assert limiter.delay() == pytest.approx(29.0)


def test_a_provider_that_never_tells_its_count_is_not_probed() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, clock=clock)
    limiter.take()
    assert limiter.take().wait == 0.0  # no header ever seen: no waiting for answers
