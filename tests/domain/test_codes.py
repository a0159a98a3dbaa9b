import pytest

from faxgate.domain.codes import (
    ErrorCode,
    RetryClass,
    StatusCode,
    describe_error,
    describe_outcome,
    describe_status,
    is_final,
    moves_forward,
    parse_error_code,
    parse_status_code,
    retry_class,
    status_rank,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("P", StatusCode.PENDING),
        ("T", StatusCode.TRANSMITTING),
        ("S", StatusCode.SENT),
        ("E", StatusCode.ERROR),
        ("H", StatusCode.ON_HOLD),
        ("O", StatusCode.ON_HOLD),
        ("o", StatusCode.ON_HOLD),
        (" s ", StatusCode.SENT),
    ],
)
def test_parse_status_code_reads_both_spellings(raw: str, expected: StatusCode) -> None:
    assert parse_status_code(raw) is expected


@pytest.mark.parametrize("raw", ["", "X", "SENT", "R"])
def test_parse_status_code_rejects_unknown_letters(raw: str) -> None:
    with pytest.raises(ValueError, match="StatusCode"):
        parse_status_code(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("B", ErrorCode.BUSY),
        ("R", ErrorCode.BUSY),
        ("r", ErrorCode.BUSY),
        ("N", ErrorCode.NO_ANSWER),
        ("A", ErrorCode.UNALLOCATED),
        ("D", ErrorCode.DISCONNECTED),
        ("L", ErrorCode.BLACKLISTED),
        ("U", ErrorCode.UNKNOWN),
        (None, None),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_error_code_reads_both_spellings(raw: str | None, expected: ErrorCode | None) -> None:
    assert parse_error_code(raw) is expected


@pytest.mark.parametrize("raw", ["X", "O", "BUSY"])
def test_parse_error_code_rejects_unknown_letters(raw: str) -> None:
    with pytest.raises(ValueError, match="ErrorCode"):
        parse_error_code(raw)


def test_enums_compare_as_the_api_letters() -> None:
    assert str(StatusCode.ON_HOLD) == "H"
    assert f"{ErrorCode.BUSY}" == "B"
    assert RetryClass("no_answer") is RetryClass.NO_ANSWER


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ErrorCode.BUSY, "the line was busy"),
        (ErrorCode.NO_ANSWER, "no one answered"),
        (ErrorCode.UNALLOCATED, "the number is not allocated (it may have been disconnected)"),
        (ErrorCode.DISCONNECTED, "disconnected or unreachable"),
        (ErrorCode.BLACKLISTED, "blacklisted"),
        (ErrorCode.UNKNOWN, "a person answered"),
    ],
)
def test_describe_error_in_plain_words(error: ErrorCode, words: str) -> None:
    assert words in describe_error(error)


def test_on_hold_says_what_a_person_must_fix() -> None:
    assert describe_status(StatusCode.ON_HOLD) == (
        "the provider put the fax on hold: the account is unconfirmed or out of pages"
    )


def test_every_status_has_its_own_description() -> None:
    descriptions = {describe_status(status) for status in StatusCode}
    assert len(descriptions) == len(StatusCode)
    assert all(text and text == text.strip() for text in descriptions)


def test_describe_outcome_prefers_the_error_reason() -> None:
    assert describe_outcome(StatusCode.ERROR, ErrorCode.NO_ANSWER) == "no one answered"
    assert describe_outcome(StatusCode.ERROR) == describe_status(StatusCode.ERROR)
    assert describe_outcome(StatusCode.SENT) == "the fax was sent"
    assert describe_outcome(StatusCode.ON_HOLD, None) == describe_status(StatusCode.ON_HOLD)


def test_final_statuses() -> None:
    finals = {status for status in StatusCode if is_final(status)}
    assert finals == {StatusCode.SENT, StatusCode.ERROR, StatusCode.ON_HOLD}


def test_status_rank_orders_pending_then_transmitting_then_finals() -> None:
    assert status_rank(StatusCode.PENDING) < status_rank(StatusCode.TRANSMITTING)
    for final in (StatusCode.SENT, StatusCode.ERROR, StatusCode.ON_HOLD):
        assert status_rank(StatusCode.TRANSMITTING) < status_rank(final)
        assert status_rank(final) == status_rank(StatusCode.SENT)


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        (StatusCode.PENDING, StatusCode.TRANSMITTING, True),
        (StatusCode.PENDING, StatusCode.SENT, True),
        (StatusCode.TRANSMITTING, StatusCode.ERROR, True),
        (StatusCode.TRANSMITTING, StatusCode.PENDING, False),
        (StatusCode.SENT, StatusCode.TRANSMITTING, False),
        (StatusCode.SENT, StatusCode.ERROR, False),
        (StatusCode.ERROR, StatusCode.SENT, False),
        (StatusCode.SENT, StatusCode.SENT, False),
    ],
)
def test_moves_forward_only(current: StatusCode, new: StatusCode, expected: bool) -> None:
    assert moves_forward(current, new) is expected


def test_retry_classes() -> None:
    assert retry_class(ErrorCode.BUSY) is RetryClass.BUSY
    assert retry_class(parse_error_code("R")) is RetryClass.BUSY
    assert retry_class(ErrorCode.NO_ANSWER) is RetryClass.NO_ANSWER
    assert retry_class(None) is None
    not_retryable = set(ErrorCode) - {ErrorCode.BUSY, ErrorCode.NO_ANSWER}
    assert all(retry_class(error) is None for error in not_retryable)
