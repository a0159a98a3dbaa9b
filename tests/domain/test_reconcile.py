from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from faxgate.domain.provider import FaxReport
from faxgate.domain.reconcile import (
    DEFAULT_WINDOW,
    CannotTell,
    Found,
    Listing,
    NotThere,
    Outcome,
    Sought,
    TryLater,
    Window,
    callback_wait,
    covers,
    might_be_for,
    reconcile,
)
from faxgate.hellofax.models import Transmission

SENT_AT = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
NUMBER = "+14155550123"
DIGITS = "14155550123"
CLOSED = SENT_AT + timedelta(minutes=11)  # listed after the match window closed
OPEN = SENT_AT + timedelta(seconds=30)  # listed right after the request
OLD = SENT_AT - timedelta(hours=1)  # a transmission older than every horizon


def tx(
    guid: str,
    *,
    to: str = DIGITS,
    at: timedelta | None = timedelta(seconds=2),
    status: str = "S",
    pages: int | None = 2,
    inbound: bool = False,
) -> Transmission:
    """A transmission as the provider lists it, created `at` after the request left."""
    created = None if at is None else str(int((SENT_AT + at).timestamp()))
    return Transmission.from_api(
        {
            "Guid": guid,
            "To": to,
            "From": "14155550100",
            "IsInbound": inbound,
            "StatusCode": status,
            "CreatedAt": created,
            "NumPagesBilled": pages,
        }
    )


OLDER = tx("old", to="19995550000", at=OLD - SENT_AT)  # proves the list was read far enough


def sought(
    *,
    job_id: str = "job",
    number: str = NUMBER,
    sent_at: datetime = SENT_AT,
    pages: tuple[int | None, ...] | None = (2,),
    cover: bool = False,
) -> Sought:
    return Sought(job_id, number, sent_at, document_pages=pages, cover_page=cover)


@dataclass
class Case:
    name: str
    transmissions: list[Transmission]
    expected: type[Outcome]
    found: str | None = None  # the GUID a Found outcome names
    listed_at: datetime = CLOSED
    complete: bool = False
    claimed: frozenset[str] = frozenset()
    sought: Sought = field(default_factory=sought)
    rivals: tuple[Sought, ...] = ()


CASES = [
    Case("one match", [tx("a"), OLDER], Found, "a"),
    Case("one match while the window is still open", [tx("a"), OLDER], Found, "a", OPEN),
    Case(
        "one match, still pending (pages not counted)",
        [tx("a", status="P", pages=0), OLDER],
        Found,
        "a",
    ),
    Case("one match, the list read to its end", [tx("a")], Found, "a", complete=True),
    Case("repeated at a page edge", [tx("a"), tx("a"), OLDER], Found, "a"),
    Case(
        "no match, window passed, read past the horizon",
        [tx("x", to="19995550000"), OLDER],
        NotThere,
    ),
    Case("no match, window passed, the whole list read", [], NotThere, complete=True),
    Case("no match, list not read far enough", [tx("x", to="19995550000")], CannotTell),
    Case("a match, list not read far enough", [tx("a")], CannotTell),
    Case("no match yet, window still open", [OLDER], TryLater, listed_at=OPEN),
    Case(
        "two candidates, different pages", [tx("a", pages=3), tx("b", pages=2), OLDER], Found, "b"
    ),
    Case("two candidates, indistinguishable", [tx("a"), tx("b"), OLDER], CannotTell),
    Case(
        "two candidates, pages not counted yet, window open",
        [tx("a", status="P", pages=0), tx("b", status="P", pages=0), OLDER],
        TryLater,
        listed_at=OPEN,
    ),
    Case(
        "two candidates, pages never counted",
        [tx("a", status="P", pages=0), tx("b", status="P", pages=0), OLDER],
        CannotTell,
    ),
    Case(
        "two candidates, job's pages unknown",
        [tx("a", pages=3), tx("b", pages=2), OLDER],
        CannotTell,
        sought=sought(pages=(2, None)),
    ),
    Case(
        "a claimed GUID is excluded",
        [tx("a"), tx("b"), OLDER],
        Found,
        "b",
        claimed=frozenset({"a"}),
    ),
    Case(
        "every candidate claimed",
        [tx("a"), tx("b"), OLDER],
        NotThere,
        claimed=frozenset({"a", "b"}),
    ),
    Case("pages disagree: not ours, but never 'not there'", [tx("a", pages=5), OLDER], CannotTell),
    Case(
        "a failed fax bills 0 pages: no evidence", [tx("a", status="E", pages=0), OLDER], Found, "a"
    ),
    Case(
        "a cover page may be billed",
        [tx("a", pages=3), OLDER],
        Found,
        "a",
        sought=sought(cover=True),
    ),
    Case(
        "a cover page may not be billed",
        [tx("a", pages=2), OLDER],
        Found,
        "a",
        sought=sought(cover=True),
    ),
    Case(
        "created before the match window but within caution",
        [tx("a", at=-timedelta(minutes=5)), OLDER],
        CannotTell,
    ),
    Case(
        "created after the match window",
        [tx("a", at=timedelta(minutes=12)), OLDER],
        CannotTell,
        listed_at=SENT_AT + timedelta(minutes=13),
    ),
    Case(
        "created before the caution horizon", [tx("a", at=-timedelta(minutes=20)), OLDER], NotThere
    ),
    Case("inbound from the number", [tx("a", inbound=True), OLDER], NotThere),
    Case("undated transmission to the number", [tx("a", at=None), OLDER], CannotTell),
    Case(
        "a rival may own it",
        [tx("a"), OLDER],
        CannotTell,
        rivals=(sought(job_id="rival", sent_at=SENT_AT + timedelta(seconds=1)),),
    ),
    Case(
        "a rival whose pages differ",
        [tx("a"), OLDER],
        Found,
        "a",
        rivals=(sought(job_id="rival", pages=(7,)),),
    ),
    Case(
        "a rival to another number",
        [tx("a"), OLDER],
        Found,
        "a",
        rivals=(sought(job_id="rival", number="+14155550999"),),
    ),
    Case(
        "a rival from another day",
        [tx("a"), OLDER],
        Found,
        "a",
        rivals=(sought(job_id="rival", sent_at=SENT_AT - timedelta(days=1)),),
    ),
    Case("the job itself among the rivals", [tx("a"), OLDER], Found, "a", rivals=(sought(),)),
    Case(
        "a rival's fax is told apart by pages",
        [tx("a"), tx("b", pages=7), OLDER],
        Found,
        "a",
        rivals=(sought(job_id="rival", pages=(7,)),),
    ),
]


# The table above is the rules for a provider that keeps the faxes it sent (the sandbox
# with removal off): only there can absence from the list mean "never taken".
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reconcile(case: Case) -> None:
    listing = Listing(case.transmissions, listed_at=case.listed_at, complete=case.complete)
    outcome = reconcile(
        case.sought, listing, claimed=case.claimed, rivals=case.rivals, provider_removes=False
    )
    assert isinstance(outcome, case.expected), outcome
    assert outcome.reason
    if isinstance(outcome, Found):
        assert outcome.transmission.guid == case.found


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("14155550123", Found),
        ("+14155550123", Found),
        ("1-415-555-0123", Found),
        ("+1 (415) 555 0123", Found),
        ("0014155550123", Found),
        ("01114155550123", Found),
        ("4155550123", CannotTell),  # a national form: maybe ours, never "not there"
        ("5550123", CannotTell),
        ("14155550124", NotThere),
        ("555", NotThere),  # too short to be taken for any number
        ("", NotThere),
    ],
)
def test_to_formats(to: str, expected: type[Outcome]) -> None:
    listing = Listing([tx("a", to=to), OLDER], listed_at=CLOSED, complete=False)
    assert isinstance(reconcile(sought(), listing, provider_removes=False), expected)


def test_other_countries_compare_digits_too() -> None:
    job = sought(number="+442079460958")
    listing = Listing([tx("a", to="442079460958"), OLDER], listed_at=CLOSED, complete=False)
    assert isinstance(reconcile(job, listing), Found)
    listing = Listing([tx("a", to="14155550123"), OLDER], listed_at=CLOSED, complete=False)
    assert isinstance(reconcile(job, listing, provider_removes=False), NotThere)


NOT_THERE_CASES = [case for case in CASES if case.expected is NotThere]


@pytest.mark.parametrize("case", NOT_THERE_CASES, ids=[case.name for case in NOT_THERE_CASES])
def test_absence_is_no_proof_when_the_provider_removes_sent_faxes(case: Case) -> None:
    listing = Listing(case.transmissions, listed_at=case.listed_at, complete=case.complete)
    outcome = reconcile(case.sought, listing, claimed=case.claimed, rivals=case.rivals)
    assert isinstance(outcome, CannotTell), outcome
    assert "removes" in outcome.reason


def test_a_kept_callback_is_found_where_the_list_no_longer_shows_the_fax() -> None:
    reported = tx("gone", pages=2)
    listing = Listing([OLDER], listed_at=CLOSED, complete=False, reported=[reported])
    outcome = reconcile(sought(), listing)
    assert isinstance(outcome, Found)
    assert outcome.transmission.guid == "gone"
    # While the window is open too: the callback proves the provider took it.
    early = Listing([OLDER], listed_at=SENT_AT, complete=False, reported=[reported])
    assert isinstance(reconcile(sought(), early), Found)


def test_a_kept_callback_is_held_to_the_same_rules_as_a_listed_fax() -> None:
    other_number = tx("x", to="19995550000", pages=2)
    listing = Listing([OLDER], listed_at=CLOSED, complete=False, reported=[other_number])
    assert isinstance(reconcile(sought(), listing, provider_removes=False), NotThere)
    wrong_pages = tx("y", pages=9)
    listing = Listing([OLDER], listed_at=CLOSED, complete=False, reported=[wrong_pages])
    assert isinstance(reconcile(sought(), listing), CannotTell)
    listed_twice = tx("z", pages=2)
    listing = Listing([tx("a"), OLDER], listed_at=CLOSED, complete=False, reported=[listed_twice])
    assert isinstance(reconcile(sought(), listing), CannotTell)  # two, untold apart
    claimed = Listing([OLDER], listed_at=CLOSED, complete=False, reported=[listed_twice])
    assert isinstance(reconcile(sought(), claimed, claimed={"z"}), CannotTell)


def test_kept_callbacks_do_not_stand_for_reading_the_list_back() -> None:
    old = tx("old", at=-timedelta(hours=1), pages=2)
    listing = Listing(
        [tx("new", to="19995550000")], listed_at=CLOSED, complete=False, reported=[old]
    )
    outcome = reconcile(sought(), listing)
    assert isinstance(outcome, CannotTell)
    assert "could not be read back" in outcome.reason


def test_the_window_can_be_widened() -> None:
    listing = Listing([tx("a", at=-timedelta(minutes=5)), OLDER], listed_at=CLOSED, complete=False)
    wide = Window(before=timedelta(minutes=6), after=timedelta(minutes=10))
    assert isinstance(reconcile(sought(), listing, window=wide), Found)
    assert isinstance(reconcile(sought(), listing), CannotTell)
    with pytest.raises(ValueError, match="window"):
        Window(before=timedelta(minutes=20), caution=timedelta(minutes=15))


def test_coverage_and_the_lenient_filter() -> None:
    horizon = sought().horizon(DEFAULT_WINDOW)
    assert horizon == SENT_AT - timedelta(minutes=15)
    assert not covers(Listing([tx("a")], listed_at=CLOSED, complete=False), horizon)
    assert covers(Listing([tx("a")], listed_at=CLOSED, complete=True), horizon)
    assert covers(Listing([tx("a"), OLDER], listed_at=CLOSED, complete=False), horizon)

    assert might_be_for(sought(), tx("a"))
    assert might_be_for(sought(), tx("a", to="4155550123"))
    assert might_be_for(sought(), tx("a", at=None))
    assert not might_be_for(sought(), tx("a", inbound=True))
    assert not might_be_for(sought(), tx("a", to="14155550124"))
    assert not might_be_for(sought(), tx("a", at=-timedelta(minutes=16)))


def test_acceptable_pages() -> None:
    assert sought(pages=(2, 3)).acceptable_pages() == frozenset({5})
    assert sought(pages=(2, 3), cover=True).acceptable_pages() == frozenset({5, 6})
    assert sought(pages=(2, None)).acceptable_pages() is None
    assert sought(pages=None).acceptable_pages() is None
    assert sought(pages=(), cover=True).acceptable_pages() == frozenset({0, 1})


def test_absence_proves_nothing_until_a_callback_would_have_come() -> None:
    listing = Listing([OLDER], listed_at=CLOSED, complete=False)
    later = reconcile(sought(), listing, absence_proves_from=CLOSED + timedelta(seconds=1))
    assert isinstance(later, TryLater)
    assert "callback" in later.reason
    proven = reconcile(sought(), listing, absence_proves_from=SENT_AT)
    assert isinstance(proven, NotThere)
    # The window still rules first: the provider may still be recording the request.
    early = Listing([OLDER], listed_at=OPEN, complete=False)
    assert isinstance(reconcile(sought(), early, absence_proves_from=SENT_AT), TryLater)


@pytest.mark.parametrize(
    ("down_minutes", "wait_minutes"),
    [
        (0, 15),  # a fax sent just before coming back: its first retry, 15 min later
        (15, 15),
        (16, 45),  # its first retry came while down: the second is 45 min after that
        (60, 45),
        (61, 90),
        (2040, 990),
        (2041, None),  # longer down than the provider retries: nothing will come
    ],
)
def test_the_wait_for_a_callback_posted_while_down(
    down_minutes: int, wait_minutes: int | None
) -> None:
    wait = callback_wait(timedelta(minutes=down_minutes))
    assert wait == (None if wait_minutes is None else timedelta(minutes=wait_minutes))
    scaled = callback_wait(timedelta(minutes=down_minutes) * 0.001, 0.001)
    assert scaled == (None if wait is None else wait * 0.001)


def carrying(reference: str | None, guid: str = "v3", **options: Any) -> FaxReport:
    """A v3 fax in the list, its title carrying a job's id (or none)."""
    return dataclasses.replace(tx(guid, **options).report(), reference=reference)


def test_a_fax_carrying_the_jobs_id_is_found_whatever_the_list_shows() -> None:
    # Read too early and too shallow for the usual rules: the id alone settles it.
    listing = Listing([carrying("job", at=timedelta(minutes=30))], listed_at=OPEN, complete=False)
    outcome = reconcile(sought(), listing)
    assert isinstance(outcome, Found)
    assert outcome.transmission.guid == "v3"


def test_a_fax_carrying_another_jobs_id_is_not_this_jobs() -> None:
    listing = Listing([carrying("another job"), OLDER], listed_at=CLOSED, complete=True)
    assert isinstance(reconcile(sought(), listing, provider_removes=False), NotThere)


def test_this_jobs_earlier_call_carries_its_id_too_and_is_passed_over() -> None:
    earlier, now = carrying("job", "call-1"), carrying("job", "call-2")
    listing = Listing([now, earlier, OLDER], listed_at=CLOSED, complete=True)
    outcome = reconcile(sought(), listing, claimed={"call-1"})
    assert isinstance(outcome, Found)
    assert outcome.transmission.guid == "call-2"
