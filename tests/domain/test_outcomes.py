"""What a provider report does to a job: forward only, retries per policy, H is final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from faxgate.domain.codes import ErrorCode, StatusCode
from faxgate.domain.jobs import TRANSITIONS, JobState, RetryPolicy, RetryRule
from faxgate.domain.outcomes import Decision, Move, Report, decide, report_payload

NOW = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
POLICY = RetryPolicy(
    busy=RetryRule(extra_tries=2, delay=timedelta(minutes=5)),
    no_answer=RetryRule(extra_tries=1, delay=timedelta(minutes=10)),
)

S = JobState
P, T, SENT, E, H = (
    StatusCode.PENDING,
    StatusCode.TRANSMITTING,
    StatusCode.SENT,
    StatusCode.ERROR,
    StatusCode.ON_HOLD,
)


def decision(
    state: JobState,
    reported: StatusCode,
    error: ErrorCode | None = None,
    *,
    attempt: int = 1,
    policy: RetryPolicy = POLICY,
) -> Decision:
    return decide(
        state=state,
        attempt=attempt,
        report=Report(status=reported, error=error),
        policy=policy,
        now=NOW,
    )


# (job state, reported status, reported error) -> move
TABLE = [
    # the normal road
    (S.SUBMITTED, T, None, Move.TRANSMITTING),
    (S.SUBMITTED, SENT, None, Move.SENT),
    (S.TRANSMITTING, SENT, None, Move.SENT),
    # repeats change nothing
    (S.SUBMITTED, P, None, Move.NOTHING),
    (S.TRANSMITTING, T, None, Move.NOTHING),
    # out of order: a late P or T never moves a job back
    (S.TRANSMITTING, P, None, Move.NOTHING),
    (S.SENT, T, None, Move.NOTHING),
    (S.SENT, P, None, Move.NOTHING),
    (S.FAILED, P, None, Move.NOTHING),
    (S.FAILED, T, None, Move.NOTHING),
    # one outcome never replaces another
    (S.SENT, E, ErrorCode.UNKNOWN, Move.NOTHING),
    (S.FAILED, SENT, None, Move.NOTHING),
    (S.SENT, SENT, None, Move.NOTHING),
    # jobs that are not the provider's (any more) are left alone
    (S.QUEUED, SENT, None, Move.NOTHING),
    (S.CANCELLED, SENT, None, Move.NOTHING),
    # on hold: a final failure a person must fix
    (S.SUBMITTED, H, None, Move.FAILED),
    (S.TRANSMITTING, H, None, Move.FAILED),
    # errors that no new call can help
    (S.TRANSMITTING, E, ErrorCode.UNALLOCATED, Move.FAILED),
    (S.TRANSMITTING, E, ErrorCode.DISCONNECTED, Move.FAILED),
    (S.TRANSMITTING, E, ErrorCode.BLACKLISTED, Move.FAILED),
    (S.TRANSMITTING, E, ErrorCode.UNKNOWN, Move.FAILED),
    (S.SUBMITTED, E, None, Move.FAILED),  # conversion failed
    # busy and no answer with tries left: call again
    (S.TRANSMITTING, E, ErrorCode.BUSY, Move.RETRY),
    (S.SUBMITTED, E, ErrorCode.NO_ANSWER, Move.RETRY),
    # a job being reconciled takes whatever the provider says
    (S.SUBMITTING, P, None, Move.SUBMITTED),
    (S.SUBMITTING, T, None, Move.TRANSMITTING),
    (S.UNCERTAIN, SENT, None, Move.SENT),
    (S.UNCERTAIN, E, ErrorCode.DISCONNECTED, Move.FAILED),
]


@pytest.mark.parametrize(("state", "reported", "error", "move"), TABLE)
def test_decision_table(
    state: JobState, reported: StatusCode, error: ErrorCode | None, move: Move
) -> None:
    result = decision(state, reported, error)
    assert result.move is move, result.reason
    if move is not Move.NOTHING:
        assert result.target is not None
        assert result.target in TRANSITIONS[state], "the store must allow the move"


def follow(state: JobState, *reports: tuple[StatusCode, ErrorCode | None]) -> list[Move]:
    """Apply reports one after another, as the tracker would."""
    moves = []
    for status, error in reports:
        result = decision(state, status, error)
        moves.append(result.move)
        state = result.target or state
    return moves


def test_reports_in_any_order_end_the_same() -> None:
    # S then a late T: sent, and the T changes nothing.
    assert follow(S.SUBMITTED, (SENT, None), (T, None)) == [Move.SENT, Move.NOTHING]
    # E then a late P: failed, and the P changes nothing.
    assert follow(S.SUBMITTED, (E, ErrorCode.UNKNOWN), (P, None)) == [Move.FAILED, Move.NOTHING]
    # T, T, S, S: one move to transmitting, one outcome.
    assert follow(S.SUBMITTED, (T, None), (T, None), (SENT, None), (SENT, None)) == [
        Move.TRANSMITTING,
        Move.NOTHING,
        Move.SENT,
        Move.NOTHING,
    ]


def test_every_error_code_has_its_plain_words() -> None:
    words = {
        ErrorCode.UNALLOCATED: "not allocated",
        ErrorCode.DISCONNECTED: "disconnected or unreachable",
        ErrorCode.BLACKLISTED: "blacklisted",
        ErrorCode.UNKNOWN: "unknown reason",
    }
    for code, expected in words.items():
        result = decision(S.TRANSMITTING, E, code)
        assert result.move is Move.FAILED
        assert expected in result.reason
        assert result.ends_story
        assert result.retry_at is None


def test_on_hold_says_a_person_must_act() -> None:
    result = decision(S.SUBMITTED, H)
    assert result.target is JobState.FAILED
    assert "on hold" in result.reason
    assert "unconfirmed" in result.reason


def test_sent_ends_the_story_and_transmitting_does_not() -> None:
    assert decision(S.TRANSMITTING, SENT).ends_story
    assert decision(S.TRANSMITTING, SENT).reason == "the fax was sent"
    assert not decision(S.SUBMITTED, T).ends_story
    assert not decision(S.TRANSMITTING, E, ErrorCode.BUSY).ends_story


def test_busy_is_retried_until_the_tries_are_used_up() -> None:
    # Two extra tries: calls 1 and 2 are followed by another, call 3 is the last.
    moves = [decision(S.TRANSMITTING, E, ErrorCode.BUSY, attempt=n) for n in (1, 2, 3)]
    assert [d.move for d in moves] == [Move.RETRY, Move.RETRY, Move.FAILED]
    assert [d.ends_story for d in moves] == [False, False, True]
    assert moves[0].retry_at == NOW + timedelta(minutes=5)
    assert moves[1].retry_at == NOW + timedelta(minutes=5)
    assert "call 2 of 3" in moves[0].reason
    assert "call 3 of 3" in moves[1].reason
    assert moves[0].reason.startswith("the line was busy; calling again after 10:05 UTC")
    assert moves[2].reason == "the line was busy (called 3 times)"


def test_no_answer_has_its_own_rule() -> None:
    first = decision(S.TRANSMITTING, E, ErrorCode.NO_ANSWER, attempt=1)
    assert first.move is Move.RETRY
    assert first.retry_at == NOW + timedelta(minutes=10)
    last = decision(S.TRANSMITTING, E, ErrorCode.NO_ANSWER, attempt=2)
    assert last.move is Move.FAILED
    assert last.reason == "no one answered (called 2 times)"


def test_a_policy_without_retries_fails_at_once() -> None:
    none = RetryPolicy(
        busy=RetryRule(extra_tries=0, delay=timedelta(0)),
        no_answer=RetryRule(extra_tries=0, delay=timedelta(0)),
    )
    result = decision(S.TRANSMITTING, E, ErrorCode.BUSY, policy=none)
    assert result.move is Move.FAILED
    assert result.reason == "the line was busy (called once)"


def test_nothing_says_why() -> None:
    assert decision(S.SENT, T).reason == "the job is already sent"
    assert decision(S.TRANSMITTING, P).reason.startswith("out of order")
    assert decision(S.SUBMITTED, P).reason.startswith("repeated")
    assert decision(S.SENT, T).target is None


def test_report_payload_carries_every_field() -> None:
    payload = report_payload(
        job_id="abc",
        state=JobState.FAILED,
        reason="the line was busy (called 3 times)",
        status_code=StatusCode.ERROR,
        error_code=ErrorCode.BUSY,
        pages=0,
        attempts=3,
        provider_guid="g",
    )
    assert payload == {
        "job_id": "abc",
        "state": "failed",
        "reason": "the line was busy (called 3 times)",
        "status_code": "E",
        "error_code": "B",
        "pages": 0,
        "attempts": 3,
        "provider_guid": "g",
    }


def test_a_late_report_for_a_fax_presumed_sent_confirms_or_corrects_it() -> None:
    confirmed = decision(S.PRESUMED_SENT, SENT)
    assert confirmed.move is Move.CONFIRMED
    assert confirmed.target is JobState.SENT
    assert not confirmed.ends_story  # the owner already heard "sent"; no second report
    # A busy line with tries left is not called again: the news may be hours late.
    corrected = decision(S.PRESUMED_SENT, E, ErrorCode.BUSY, attempt=1)
    assert corrected.move is Move.CORRECTED
    assert corrected.target is JobState.FAILED
    assert corrected.ends_story  # the owner is told it failed after all
    assert corrected.reason.startswith("the line was busy")
    assert "not sent again" in corrected.reason
    assert decision(S.PRESUMED_SENT, H).target is JobState.FAILED
    for status in (P, T):
        assert decision(S.PRESUMED_SENT, status).move is Move.NOTHING
    for move in (confirmed, corrected):
        assert move.target in TRANSITIONS[JobState.PRESUMED_SENT]
