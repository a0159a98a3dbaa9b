"""The sending policy at work in the dispatcher, against the sandbox over real HTTP, with a
clock the tests set: one call at a time per number under a burst, allowed hours across
midnight and time zones, limits per sender, priorities in a backlog, a reload while jobs
wait, a fax refused for its pages."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from faxgate.domain.jobs import Intake, Job
from faxgate.domain.sending_rules import Candidate, Hours, Match, Rule
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.sandbox import Sandbox
from faxgate.sending.dispatcher import Dispatcher
from faxgate.sending.policy import SendingPolicy, count_pages
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document
from tests.sending.test_dispatcher import (
    LETTER,
    S,
    assert_each_sent_once,
    dispatcher,
    fresh,
    spool,
)

__all__ = ["spool"]  # the fixture used here

LONDON = "+442079460000"
NEW_YORK = "+12125550147"
# A Wednesday, noon UTC: 07:00 in New York, 12:00 in London.
NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


class SetClock:
    """A clock the test sets: rules judge by it, not by the wall."""

    def __init__(self, now: datetime = NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def queue(
    store: Store,
    spool: Spool,
    number: str,
    *,
    sender: str | None = None,
    priority: int = 0,
    document: bytes = LETTER,
) -> Job:
    (job,) = store.create_jobs(
        [
            NewJob(
                to_number=number,
                intake=Intake.SMTP if sender else Intake.CLI,
                intake_ref={"sender": sender} if sender else {},
                documents=[
                    NewDocument(
                        "letter.pdf", spool.store_bytes(document, suffix=".pdf"), "application/pdf"
                    )
                ],
                priority=priority,
            )
        ]
    )
    return job


def letter(n: int) -> bytes:
    """A letter of its own (the sandbox takes one letter twice to a number for a
    duplicate)."""
    return LETTER + f"% letter {n}\n".encode()


def make(
    store: Store, client: HelloFaxClient, clock: SetClock, policy: SendingPolicy, **options: int
) -> Dispatcher:
    return dispatcher(store, client, clock, policy=policy, **options)  # type: ignore[arg-type]


def end_calls(store: Store) -> None:
    """The provider has sent every fax it holds (as its callbacks would tell)."""
    for job in store.jobs_in_states([S.SUBMITTED, S.TRANSMITTING]):
        store.transition(job.id, S.SENT, detail="sent")


async def test_a_burst_to_one_number_goes_one_call_at_a_time_in_arrival_order(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    clock = SetClock()
    to_a = [queue(store, spool, NEW_YORK, document=letter(n)) for n in range(5)]
    to_b = [queue(store, spool, LONDON, document=letter(n)) for n in range(2)]
    the_dispatcher = make(store, client, clock, SendingPolicy())

    order: list[str] = []
    for _ in range(5):
        report = await the_dispatcher.dispatch_once()
        sent_now = [j.id for j in store.jobs_in_states([S.SUBMITTED])]
        assert len([i for i in sent_now if i in {j.id for j in to_a}]) <= 1
        order += sent_now
        assert report.submitted == len(sent_now)
        end_calls(store)
    assert [i for i in order if i in {j.id for j in to_a}] == [j.id for j in to_a]
    assert [i for i in order if i in {j.id for j in to_b}] == [j.id for j in to_b]
    assert_each_sent_once(sandbox, store, to_a + to_b)


async def test_without_serialisation_the_burst_goes_at_once(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    jobs = [queue(store, spool, NEW_YORK, document=letter(n)) for n in range(4)]
    the_dispatcher = make(store, client, SetClock(), SendingPolicy(per_number=None))
    assert (await the_dispatcher.dispatch_once()).submitted == 4
    assert_each_sent_once(sandbox, store, jobs)


async def test_a_window_across_midnight_waits_for_its_opening_in_the_numbers_zone(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    night = Rule("night", Match(numbers=("+44",)), hours=Hours(time(22), time(6)))
    clock = SetClock()
    london = queue(store, spool, LONDON)
    the_dispatcher = make(store, client, clock, SendingPolicy(rules=(night,)))

    report = await the_dispatcher.dispatch_once()
    assert (report.submitted, report.waiting) == (0, 1)
    held = fresh(store, london)
    assert held.state is S.QUEUED
    assert held.not_before == datetime(2026, 12, 2, 22, 0, tzinfo=UTC)
    assert held.wait_kind == "hours"
    assert held.wait_reason is not None
    assert held.wait_reason.startswith("waiting for 22:00 in Europe/London")
    # Its number's line waits behind it: a later fax there does not go first.
    later = queue(store, spool, LONDON)
    assert (await the_dispatcher.dispatch_once()).submitted == 0

    clock.now = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)  # 01:30 in London: still open
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    assert fresh(store, london).state is S.SUBMITTED
    assert fresh(store, london).wait_reason is None
    end_calls(store)
    clock.now = datetime(2026, 12, 3, 6, 30, tzinfo=UTC)  # closed again: waits till 22:00
    assert (await the_dispatcher.dispatch_once()).waiting == 1
    assert fresh(store, later).not_before == datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


async def test_a_window_follows_the_destinations_zone(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    office = Rule("office", hours=Hours(time(8), time(18)))
    clock = SetClock()  # noon UTC: 12:00 in London, 07:00 in New York
    london, new_york = queue(store, spool, LONDON), queue(store, spool, NEW_YORK)
    the_dispatcher = make(store, client, clock, SendingPolicy(rules=(office,)))

    report = await the_dispatcher.dispatch_once()
    assert (report.submitted, report.waiting) == (1, 1)
    assert fresh(store, london).state is S.SUBMITTED
    waiting = fresh(store, new_york)
    assert waiting.not_before == datetime(2026, 12, 2, 13, 0, tzinfo=UTC)
    assert waiting.wait_reason is not None
    assert waiting.wait_reason.startswith("waiting for 08:00 in America/New_York")
    clock.advance(hours=1)
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    assert_each_sent_once(sandbox, store, [london, new_york])


async def test_a_sender_over_its_limit_waits_and_others_go(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    capped = Rule("capped", Match(senders=("@example.com",)), per_sender_hour=2)
    clock = SetClock()
    mine = [
        queue(store, spool, f"+1415555{3000 + n:04d}", sender="Ann@Example.com") for n in range(3)
    ]
    other = queue(store, spool, "+14155553100", sender="bob@example.org")
    the_dispatcher = make(store, client, clock, SendingPolicy(rules=(capped,)))

    report = await the_dispatcher.dispatch_once()
    assert (report.submitted, report.waiting) == (3, 1)
    assert fresh(store, other).state is S.SUBMITTED
    held = fresh(store, mine[2])
    assert held.wait_kind == "sender_limit"
    assert held.wait_reason == "the sender limit of 2 an hour is reached (rule 'capped')"
    assert held.not_before == NOON + timedelta(hours=1)

    clock.advance(minutes=30)  # still within the hour: no cycle sends it
    assert (await the_dispatcher.dispatch_once()).submitted == 0
    clock.advance(minutes=30)
    assert (await the_dispatcher.dispatch_once()).submitted == 1
    assert_each_sent_once(sandbox, store, [*mine, other])


async def test_urgent_faxes_go_first_in_a_backlog(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    bulk = [queue(store, spool, f"+1415555{3200 + n:04d}", priority=-1) for n in range(3)]
    normal = [queue(store, spool, f"+1415555{3300 + n:04d}") for n in range(3)]
    urgent = [queue(store, spool, f"+1415555{3400 + n:04d}", priority=1) for n in range(2)]
    the_dispatcher = make(store, client, SetClock(), SendingPolicy(), max_in_flight=3)

    assert (await the_dispatcher.dispatch_once()).submitted == 3
    first = {j.id for j in store.jobs_in_states([S.SUBMITTED])}
    assert first == {urgent[0].id, urgent[1].id, normal[0].id}
    end_calls(store)
    assert (await the_dispatcher.dispatch_once()).submitted == 3
    second = {j.id for j in store.jobs_in_states([S.SUBMITTED])}
    assert second == {normal[1].id, normal[2].id, bulk[0].id}


async def test_a_reload_that_drops_a_rule_lets_its_waiting_jobs_go(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    closed = Rule("closed", hours=Hours(time(20), time(21)))
    clock = SetClock()
    jobs = [queue(store, spool, f"+1415555{3500 + n:04d}") for n in range(3)]
    the_dispatcher = make(store, client, clock, SendingPolicy(rules=(closed,)))
    assert (await the_dispatcher.dispatch_once()).waiting == 3

    # A rule that still holds them is judged anew: they wait, for its own reason.
    later = Rule("later", hours=Hours(time(22), time(23)))
    await the_dispatcher.use_policy(SendingPolicy(rules=(later,)))
    assert all(fresh(store, job).not_before is None for job in jobs)
    assert (await the_dispatcher.dispatch_once()).waiting == 3
    reason = fresh(store, jobs[0]).wait_reason
    assert reason is not None
    assert "'later'" in reason

    await the_dispatcher.use_policy(SendingPolicy())
    assert (await the_dispatcher.dispatch_once()).submitted == 3
    assert_each_sent_once(sandbox, store, jobs)


async def test_a_fax_over_its_rules_pages_fails_with_a_report_naming_the_rule(
    sandbox: Sandbox, client: HelloFaxClient, store: Store, spool: Spool
) -> None:
    short = Rule("short faxes", Match(numbers=("+1212",)), max_pages=2)
    long_fax = queue(store, spool, NEW_YORK, document=pdf_document(3))
    fits = queue(store, spool, "+12125550148", document=pdf_document(2))
    the_dispatcher = make(store, client, SetClock(), SendingPolicy(rules=(short,)))

    report = await the_dispatcher.dispatch_once()
    assert (report.submitted, report.failed) == (1, 1)
    failed = fresh(store, long_fax)
    assert failed.state is S.FAILED
    assert failed.reason == (
        "the rule 'short faxes' allows at most 2 pages to this number; this fax has 3"
    )
    [note] = store.notifications(long_fax.id)
    assert note.payload["reason"] == failed.reason
    assert fresh(store, fits).state is S.SUBMITTED


def test_pages_are_counted_only_where_they_can_be(spool: Spool) -> None:
    from pathlib import Path

    from faxgate.domain.jobs import Document

    pdf = spool.store_bytes(pdf_document(3), suffix=".pdf")

    def doc(path: Path, kind: str) -> Document:
        return Document("j", 0, "x", path, 1, "0" * 64, kind)

    assert count_pages([doc(pdf.path, "application/pdf"), doc(pdf.path, "image/png")]) == 4
    assert count_pages([doc(pdf.path, "application/pdf"), doc(pdf.path, "text/plain")]) is None


async def test_a_job_the_rules_cannot_judge_waits_and_the_others_go(
    sandbox: Sandbox,
    client: HelloFaxClient,
    store: Store,
    spool: Spool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faxgate.sending.policy as applied

    office = Rule("office", hours=Hours(time(8), time(18)))
    odd, fine = queue(store, spool, LONDON), queue(store, spool, "+442079460001")
    from faxgate.domain.sending_rules import judge as real_judge

    def judge_failing_once(seen: Candidate, *args: Any, **kwargs: Any) -> object:
        if seen.job_id == odd.id:
            raise ValueError("a bug meeting odd input")
        return real_judge(seen, *args, **kwargs)

    monkeypatch.setattr(applied, "judge", judge_failing_once)
    clock = SetClock()
    the_dispatcher = make(store, client, clock, SendingPolicy(rules=(office,)))
    report = await the_dispatcher.dispatch_once()
    assert (report.submitted, report.waiting) == (1, 1)
    assert fresh(store, fine).state is S.SUBMITTED
    held = fresh(store, odd)
    assert held.state is S.QUEUED
    assert held.wait_kind == "error"
    assert held.not_before == NOON + applied.JUDGE_AGAIN
