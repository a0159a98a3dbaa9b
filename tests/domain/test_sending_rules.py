from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from faxgate.domain.sending_rules import (
    Candidate,
    Hours,
    Match,
    Refuse,
    Rule,
    SenderUse,
    Wait,
    destination_zone,
    first_match,
    in_sending_order,
    judge,
    one_call_per_number,
)

NEW_YORK = "+12125550100"  # America/New_York
LONDON = "+442071234567"  # Europe/London
TOLL_FREE = "+18005550100"  # shared by every North American zone
OFFICE = Hours(time(8), time(18), frozenset(range(5)))  # weekdays 08:00 to 18:00
NIGHT = Hours(time(22), time(6), frozenset({0}))  # opens Monday 22:00, until Tuesday 06:00


def job(
    job_id: str = "j1",
    number: str = NEW_YORK,
    *,
    sender: str | None = "ann@clinic.example",
    folder: str | None = None,
    pages: int | None = 1,
    priority: int = 0,
) -> Candidate:
    return Candidate(job_id, number, sender, folder, pages, priority)


def at(text: str, zone: str = "UTC") -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


# --- hours ---------------------------------------------------------------------------


def test_office_hours_are_open_on_weekdays_only() -> None:
    assert OFFICE.is_open(at("2026-12-02T08:00"))  # a Wednesday
    assert not OFFICE.is_open(at("2026-12-02T18:00"))  # the end is not in the window
    assert not OFFICE.is_open(at("2026-12-05T10:00"))  # Saturday
    assert OFFICE.next_open(at("2026-12-04T19:00")) == at("2026-12-07T08:00")  # Fri to Mon


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    assert NIGHT.is_open(at("2026-11-30T23:00"))  # Monday night
    assert NIGHT.is_open(at("2026-12-01T05:59"))  # Tuesday morning, the same window
    assert not NIGHT.is_open(at("2026-12-01T06:00"))
    assert not NIGHT.is_open(at("2026-12-01T23:00"))  # Tuesday night: no window opens
    assert not NIGHT.is_open(at("2026-11-30T05:00"))  # Monday morning: Sunday opened none
    assert NIGHT.next_open(at("2026-12-01T06:00")) == at("2026-12-07T22:00")


def test_the_next_opening_is_local_wall_time_across_a_clock_change() -> None:
    # New York moves its clocks back on 2026-11-01: 08:00 local is 13:00 UTC, not 12:00.
    local = at("2026-10-31T19:00", "America/New_York")
    opening = Hours(time(8), time(18)).next_open(local)
    assert opening.astimezone(UTC) == at("2026-11-01T13:00")


# --- zones and matching ----------------------------------------------------------------


def test_a_number_is_placed_in_its_zone_or_the_fallback() -> None:
    assert destination_zone(NEW_YORK).key == "America/New_York"
    assert destination_zone(LONDON).key == "Europe/London"
    assert destination_zone(TOLL_FREE, "America/Chicago").key == "America/Chicago"
    assert destination_zone("not a number", "Europe/Paris").key == "Europe/Paris"


@pytest.mark.parametrize(
    ("match", "fits"),
    [
        (Match(), True),
        (Match(numbers=("+1212",)), True),
        (Match(numbers=("+1415", "+44")), False),
        (Match(countries=("US",)), True),
        (Match(countries=("GB",)), False),
        (Match(senders=("@CLINIC.example",)), True),
        (Match(senders=("ann@clinic.example",)), True),
        (Match(senders=("bob@clinic.example", "@other.example")), False),
        (Match(folders=("pharmacy",)), False),
        (Match(numbers=("+1",), senders=("@other.example",)), False),  # every field must fit
    ],
)
def test_a_match_fits_when_every_field_it_names_fits(match: Match, fits: bool) -> None:
    assert match.fits(job()) is fits


def test_a_sender_rule_does_not_fit_a_hot_folder_job() -> None:
    dropped = job(sender=None, folder="pharmacy")
    assert not Match(senders=("@clinic.example",)).fits(dropped)
    assert Match(folders=("pharmacy",)).fits(dropped)


def test_the_first_rule_that_fits_wins() -> None:
    rules = [
        Rule("london", Match(countries=("GB",))),
        Rule("new york", Match(numbers=("+1212",))),
        Rule("everyone"),
    ]
    assert first_match(rules, job()) == rules[1]
    assert first_match(rules, job(number="+14155550100")) == rules[2]
    assert first_match(rules[:2], job(number="+14155550100")) is None


# --- judging one job --------------------------------------------------------------------


def test_no_rule_and_a_rule_without_limits_let_a_job_go() -> None:
    now = at("2026-12-02T03:00")
    assert judge(job(), None, now) is None
    assert judge(job(), Rule("plain"), now) is None


def test_a_fax_over_the_page_limit_is_refused_with_the_rule_named() -> None:
    rule = Rule("small machines", max_pages=10)
    verdict = judge(job(pages=50), rule, at("2026-12-02T12:00"))
    assert verdict == Refuse(
        "the rule 'small machines' allows at most 10 pages to this number; this fax has 50"
    )
    assert judge(job(pages=10), rule, at("2026-12-02T12:00")) is None
    assert judge(job(pages=None), rule, at("2026-12-02T12:00")) is None  # not counted yet


def test_outside_its_hours_a_job_waits_for_the_opening_in_the_destination_zone() -> None:
    rule = Rule("practices", hours=OFFICE)
    # 03:00 UTC on a Wednesday is 22:00 on Tuesday in New York.
    verdict = judge(job(), rule, at("2026-12-02T03:00"))
    assert verdict == Wait(
        at("2026-12-02T13:00"),
        "waiting for 08:00 in America/New_York"
        " (the rule 'practices' allows 08:00 to 18:00 on mon, tue, wed, thu, fri)",
    )
    # The same moment is 03:00 in London: closed too, but it opens five hours sooner.
    london = judge(job(number=LONDON), rule, at("2026-12-02T03:00"))
    assert isinstance(london, Wait)
    assert london.until == at("2026-12-02T08:00")
    assert judge(job(), rule, at("2026-12-02T15:00")) is None  # 10:00 in New York


def test_a_number_no_zone_is_known_for_uses_the_fallback_zone() -> None:
    rule = Rule("practices", hours=OFFICE)
    verdict = judge(job(number=TOLL_FREE), rule, at("2026-12-02T03:00"), fallback_zone="UTC")
    assert isinstance(verdict, Wait)
    assert verdict.until == at("2026-12-02T08:00")


def test_a_sender_over_its_hourly_limit_waits_until_the_oldest_send_ages_out() -> None:
    rule = Rule("per sender", per_sender_hour=3, per_sender_day=5)
    now = at("2026-12-02T12:00")
    sent = [now - timedelta(minutes=m) for m in (50, 30, 10)]
    verdict = judge(job(), rule, now, use=SenderUse(sent))
    assert verdict == Wait(
        now + timedelta(minutes=10),
        "the sender limit of 3 an hour is reached (rule 'per sender')",
        "sender_limit",
    )
    assert judge(job(), rule, now, use=SenderUse(sent[1:])) is None
    # Older sends count against the day only.
    today = [now - timedelta(hours=h) for h in (20, 10, 5, 3)] + sent[2:]
    verdict = judge(job(), rule, now, use=SenderUse(today))
    assert verdict == Wait(
        now + timedelta(hours=4),
        "the sender limit of 5 a day is reached (rule 'per sender')",
        "sender_limit",
    )


# --- the order of sending ----------------------------------------------------------------


def test_urgent_jobs_go_first_and_bulk_last() -> None:
    jobs = [job("bulk", priority=-1), job("normal"), job("urgent", priority=1)]
    ordered = in_sending_order([(j, None) for j in jobs])
    assert [j.job_id for j in ordered] == ["urgent", "normal", "bulk"]


def test_a_rule_priority_adds_to_the_job_priority() -> None:
    lab = Rule("lab", Match(numbers=("+44",)), priority=1)
    jobs = [(job("first"), None), (job("lab", number=LONDON), lab)]
    assert [j.job_id for j in in_sending_order(jobs)] == ["lab", "first"]


def test_a_batch_of_one_sender_does_not_hold_another_senders_fax_behind_it() -> None:
    batch = [
        job(f"bulk{n}", number=f"+1212555{n:04d}", sender="bulk@x.example") for n in range(1000)
    ]
    single = job("single", sender="ann@clinic.example")
    dropped = job("dropped", sender=None, folder="scans")
    ordered = in_sending_order([(j, None) for j in [*batch, single, dropped]])
    assert [j.job_id for j in ordered[:4]] == ["bulk0", "single", "dropped", "bulk1"]
    assert [j.job_id for j in ordered[4:]] == [f"bulk{n}" for n in range(2, 1000)]


def test_one_call_at_a_time_per_number_the_rest_wait_in_order() -> None:
    burst = [job(f"j{n}") for n in range(4)] + [job("other", number=LONDON)]
    go, behind = one_call_per_number(burst, {}, per_number=1)
    assert [j.job_id for j in go] == ["j0", "other"]
    assert behind == {
        "j1": "behind 1 fax to this number",
        "j2": "behind 2 faxes to this number",
        "j3": "behind 3 faxes to this number",
    }
    go, behind = one_call_per_number(burst, {NEW_YORK: 1}, per_number=1)
    assert [j.job_id for j in go] == ["other"]
    assert behind["j0"] == "behind 1 fax to this number"
    go, _ = one_call_per_number(burst, {NEW_YORK: 1}, per_number=2)
    assert [j.job_id for j in go] == ["j0", "other"]
