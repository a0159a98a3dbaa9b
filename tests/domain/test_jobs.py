from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from faxgate.domain.codes import RetryClass
from faxgate.domain.jobs import (
    ACTIVE_STATES,
    FINAL_STATES,
    JOB_ID_ALPHABET,
    IllegalTransition,
    Intake,
    Job,
    JobState,
    RetryPolicy,
    RetryRule,
    can_cancel,
    can_retry,
    check_transition,
    is_final,
    new_job_id,
    normalize_job_id,
)

# The job's life as design.md draws it, written out here independently of the module.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("queued", "submitting"),
        ("queued", "cancelled"),
        ("queued", "failed"),
        ("submitting", "submitted"),
        ("submitting", "queued"),
        ("submitting", "failed"),
        ("submitting", "uncertain"),
        ("submitting", "sent"),
        ("submitting", "transmitting"),
        ("submitted", "transmitting"),
        ("submitted", "sent"),
        ("submitted", "failed"),
        ("submitted", "queued"),
        ("transmitting", "sent"),
        ("transmitting", "failed"),
        ("transmitting", "queued"),
        ("uncertain", "submitted"),
        ("uncertain", "transmitting"),
        ("uncertain", "sent"),
        ("uncertain", "failed"),
        ("uncertain", "queued"),
        ("uncertain", "cancelled"),
        ("failed", "queued"),
        # The provider removed the fax, which it does once a fax is sent.
        ("submitted", "presumed_sent"),
        ("transmitting", "presumed_sent"),
        ("presumed_sent", "sent"),  # a late callback confirmed it
        ("presumed_sent", "failed"),  # a late callback said it failed
        ("presumed_sent", "queued"),  # a person said: send it again
    }
)
STATE_NAMES = (
    "queued",
    "submitting",
    "submitted",
    "transmitting",
    "sent",
    "presumed_sent",
    "failed",
    "uncertain",
    "cancelled",
)
ALL_PAIRS = list(itertools.product(STATE_NAMES, repeat=2))


def test_the_states_are_exactly_those_of_the_design() -> None:
    assert sorted(s.value for s in JobState) == sorted(STATE_NAMES)


@pytest.mark.parametrize(("src", "dst"), sorted(ALLOWED))
def test_allowed_transition_passes(src: str, dst: str) -> None:
    check_transition(JobState(src), JobState(dst))


@pytest.mark.parametrize(("src", "dst"), sorted(set(ALL_PAIRS) - ALLOWED))
def test_every_other_transition_is_refused(src: str, dst: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition(JobState(src), JobState(dst))
    assert caught.value.src == src
    assert caught.value.dst == dst
    assert src in str(caught.value)
    assert dst in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_final_states_have_no_way_out() -> None:
    assert {s.value for s in FINAL_STATES} == {"sent", "cancelled"}
    assert is_final(JobState.SENT)
    assert is_final(JobState.CANCELLED)
    assert not is_final(JobState.FAILED)  # a person may still retry it


def test_active_states_are_those_the_provider_may_hold() -> None:
    assert {s.value for s in ACTIVE_STATES} == {"submitting", "submitted", "transmitting"}


@pytest.mark.parametrize("state", STATE_NAMES)
def test_retry_and_cancel_rules(state: str) -> None:
    assert can_retry(JobState(state)) == (state in {"failed", "uncertain", "presumed_sent"})
    assert can_cancel(JobState(state)) == (state in {"queued", "uncertain"})
    # A person's retry or cancel must be a move the state machine allows.
    if can_retry(JobState(state)):
        assert (state, "queued") in ALLOWED
    if can_cancel(JobState(state)):
        assert (state, "cancelled") in ALLOWED


# ---------------------------------------------------------------------------- retries


def test_default_busy_policy_allows_three_more_tries_five_minutes_apart() -> None:
    policy = RetryPolicy()
    assert [policy.next_try("busy", n) for n in (1, 2, 3, 4, 5)] == [
        timedelta(minutes=5),
        timedelta(minutes=5),
        timedelta(minutes=5),
        None,
        None,
    ]


def test_default_no_answer_policy_allows_one_more_try() -> None:
    policy = RetryPolicy()
    assert policy.next_try(RetryClass.NO_ANSWER, 1) is not None
    assert policy.next_try(RetryClass.NO_ANSWER, 2) is None


def test_custom_policy() -> None:
    policy = RetryPolicy(
        busy=RetryRule(extra_tries=0, delay=timedelta(minutes=1)),
        no_answer=RetryRule(extra_tries=2, delay=timedelta(seconds=30)),
    )
    assert policy.next_try("busy", 1) is None
    assert policy.next_try("no_answer", 2) == timedelta(seconds=30)
    assert policy.next_try("no_answer", 3) is None


def test_unknown_retry_class_is_never_retried() -> None:
    assert RetryPolicy().next_try("unallocated", 1) is None


@pytest.mark.parametrize(
    ("extra", "delay"), [(-1, timedelta(minutes=1)), (1, timedelta(seconds=-1))]
)
def test_retry_rule_refuses_negative_values(extra: int, delay: timedelta) -> None:
    with pytest.raises(ValueError, match="negative"):
        RetryRule(extra_tries=extra, delay=delay)


# ---------------------------------------------------------------------------- job ids

T0 = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def test_job_id_shape() -> None:
    job_id = new_job_id(T0, lambda bits: (1 << bits) - 1)
    assert len(job_id) == 12
    assert set(job_id) <= set(JOB_ID_ALPHABET)
    assert job_id == job_id.lower()
    assert not set(job_id) & set("ilou")


def test_job_id_is_deterministic_given_its_inputs() -> None:
    assert new_job_id(T0, lambda bits: 12345) == new_job_id(T0, lambda bits: 12345)
    assert new_job_id(T0, lambda bits: 1) != new_job_id(T0, lambda bits: 2)


def test_job_id_asks_for_25_random_bits() -> None:
    asked: list[int] = []

    def rand(bits: int) -> int:
        asked.append(bits)
        return 0

    new_job_id(T0, rand)
    assert asked == [25]


def _fixed(value: int) -> Callable[[int], int]:
    return lambda bits: value


def test_job_ids_sort_by_creation() -> None:
    times = [T0 + timedelta(seconds=s) for s in (0, 1, 31, 32, 1023, 1024, 10**6, 10**8)]
    # The random part works against the order: highest first, lowest later.
    ids = [new_job_id(t, _fixed((1 << 25) - 1 - i)) for i, t in enumerate(times)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_job_ids_of_one_second_differ_by_their_random_part() -> None:
    a = new_job_id(T0, lambda bits: 0)
    b = new_job_id(T0 + timedelta(milliseconds=999), lambda bits: 1)
    assert a[:7] == b[:7]
    assert a != b


def test_job_id_with_real_randomness_is_unique() -> None:
    # 25 random bits per second: 100 ids collide once in ~7,000 runs (the store retries a
    # taken id); 1,000 would collide in 1.5% of runs.
    ids = {new_job_id(T0) for _ in range(100)}
    assert len(ids) == 100


def test_job_id_before_1970_is_refused() -> None:
    with pytest.raises(ValueError, match="1970"):
        new_job_id(datetime(1969, 12, 31, tzinfo=UTC), lambda bits: 0)


def test_random_part_must_fit() -> None:
    with pytest.raises(ValueError, match="too large"):
        new_job_id(T0, lambda bits: 1 << bits)


def test_normalize_job_id_forgives_how_people_type() -> None:
    job_id = new_job_id(T0, lambda bits: 0b1000010000100001000010000)
    shouted = job_id.upper()
    assert normalize_job_id(shouted) == job_id
    assert normalize_job_id(f" {job_id[:6]}-{job_id[6:]} ") == job_id
    assert normalize_job_id("0123456789ab".replace("0", "O").replace("1", "l")) == ("0123456789ab")
    assert normalize_job_id("I23456789abc") == "123456789abc"


@pytest.mark.parametrize("text", ["", "short", "0123456789abcd", "0123456789au", "0123456789a!"])
def test_normalize_job_id_refuses_what_is_not_an_id(text: str) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        normalize_job_id(text)


def test_why_a_queued_job_waits() -> None:
    from faxgate.domain.jobs import why_waiting

    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    queued = Job(
        id="1nh1w3sdnkme",
        created_at=now,
        updated_at=now,
        state=JobState.QUEUED,
        intake=Intake.CLI,
        to_number="+14155550123",
    )
    assert why_waiting(queued, now, ahead=0, per_number=1) is None
    assert why_waiting(queued, now, ahead=1, per_number=1) == "behind 1 fax to this number"
    assert why_waiting(queued, now, ahead=3, per_number=2) == "behind 3 faxes to this number"
    assert why_waiting(queued, now, ahead=3, per_number=None) is None
    held = replace(
        queued, not_before=now + timedelta(hours=1), wait_kind="hours", wait_reason="closed"
    )
    assert why_waiting(held, now, ahead=2, per_number=1) == "closed"
    busy = replace(queued, not_before=now + timedelta(minutes=5), reason="the line was busy")
    text = why_waiting(busy, now, ahead=0, per_number=1)
    assert text is not None
    assert text.startswith("waiting to call again at ")
    assert text.endswith("(the line was busy)")
    assert why_waiting(replace(busy, state=JobState.SUBMITTED), now, ahead=0, per_number=1) is None


@pytest.mark.parametrize(
    ("text", "priority"),
    [("urgent", 1), ("1 (Highest)", 1), ("High", 1), ("3 (Normal)", 0), ("normal", 0),
     ("5 (Lowest)", -1), ("non-urgent", -1), ("bulk", -1), ("", None), ("soonish", None)],
)  # fmt: skip
def test_priorities_as_people_and_mailers_write_them(text: str, priority: int | None) -> None:
    from faxgate.domain.jobs import priority_named

    assert priority_named(text) == priority
