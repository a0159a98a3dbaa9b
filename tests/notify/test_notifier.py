"""The outbox notifier on a real SQLite store, and the default report mail it sends."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from faxgate import metrics
from faxgate.domain.jobs import Document, Event, Intake, Job, JobState, Notification
from faxgate.domain.outcomes import PRESUMED_SENT_REASON
from faxgate.notify.mailer import AUTO_GENERATED, AUTO_REPLIED, MaildirMailer, MailError
from faxgate.notify.notifier import DeliveryBackoff, Notifier, default_handlers
from faxgate.notify.report_text import calls, compose_report
from faxgate.notify.reporter import NothingToDeliver, PermanentFailure, Reporter
from faxgate.store import NewDocument, NewJob, NewNotification, Store
from faxgate.store.spool import SpooledFile
from tests.conftest import wait_for
from tests.store.making import FakeClock

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
S = JobState
GUID = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "faxgate.sqlite3"


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store.open(db_path, clock=clock) as opened:
        yield opened


def document(name: str) -> NewDocument:
    data = name.encode()
    path = Path("/var/spool/faxgate") / name
    return NewDocument(
        name, SpooledFile(path, len(data), hashlib.sha256(data).hexdigest()), "application/pdf"
    )


def queue_job(store: Store, **kwargs: Any) -> Job:
    values: dict[str, Any] = {
        "to_number": "+14155550100",
        "intake": Intake.CLI,
        "reply_to": "alice@example.com",
        "documents": [document("contract.pdf"), document("annex.pdf")],
    }
    values.update(kwargs)
    [job] = store.create_jobs([NewJob(**values)])
    return job


def report_payload(job: Job, state: JobState, **values: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "job_id": job.id,
        "state": state.value,
        "reason": None,
        "status_code": None,
        "error_code": None,
        "pages": None,
        "attempts": job.attempt,
        "provider_guid": None,
    }
    payload.update(values)
    return payload


def make_a_call(store: Store, clock: FakeClock, job_id: str, guid: str) -> None:
    clock.advance(seconds=1)
    store.transition(job_id, S.SUBMITTING, detail="submitting", submitted_at=clock())
    clock.advance(seconds=2)
    store.transition(
        job_id, S.SUBMITTED, detail="submitted", provider_guid=guid, provider_status="P"
    )
    clock.advance(seconds=30)
    store.transition(job_id, S.TRANSMITTING, detail="transmitting", provider_status="T")
    clock.advance(seconds=60)


def send_fax(store: Store, clock: FakeClock, job: Job, pages: int = 3) -> Job:
    make_a_call(store, clock, job.id, GUID)
    payload = report_payload(
        job, S.SENT, reason="the fax was sent", status_code="S", pages=pages, provider_guid=GUID
    )
    return store.transition(
        job.id,
        S.SENT,
        detail="sent",
        pages=pages,
        provider_status="S",
        notify=NewNotification(payload=payload),
    )


def fail_busy(store: Store, clock: FakeClock, job: Job, tries: int) -> Job:
    """`tries` calls to a busy line, with one submission that never left on the way."""
    for attempt in range(1, tries + 1):
        if attempt == 2:  # a connection error: the request never left, so no call
            clock.advance(seconds=1)
            store.transition(job.id, S.SUBMITTING, detail="submitting")
            store.transition(job.id, S.QUEUED, detail="connection refused; trying again")
        guid = f"{attempt:040x}"
        make_a_call(store, clock, job.id, guid)
        if attempt < tries:
            store.transition(
                job.id,
                S.QUEUED,
                detail="the line was busy; trying again in 5m",
                data={"provider_guid": guid},
                attempt=attempt + 1,
                provider_guid=None,
                not_before=clock() + timedelta(minutes=5),
            )
            clock.advance(minutes=5)
    payload = report_payload(
        job,
        S.FAILED,
        reason="the line was busy",
        status_code="E",
        error_code="B",
        attempts=tries,
        provider_guid=f"{tries:040x}",
    )
    return store.transition(
        job.id,
        S.FAILED,
        detail="the line was busy",
        provider_status="E",
        provider_error="B",
        reason="the line was busy",
        notify=NewNotification(payload=payload),
    )


def lose_the_answer(store: Store, clock: FakeClock, job: Job) -> Job:
    clock.advance(seconds=1)
    store.transition(job.id, S.SUBMITTING, detail="submitting", submitted_at=clock())
    clock.advance(seconds=30)
    reason = "the provider's answer was lost and its list does not show the fax"
    return store.transition(
        job.id,
        S.UNCERTAIN,
        detail=reason,
        reason=reason,
        notify=NewNotification(payload=report_payload(job, S.UNCERTAIN, reason=reason)),
    )


@dataclass
class RecordingHandler:
    """Records each call; fails as scripted (an exception per call, None: succeed)."""

    failures: list[BaseException | None] = field(default_factory=list)
    calls: list[tuple[Notification, Job | None]] = field(default_factory=list)

    async def __call__(self, notification: Notification, job: Job | None) -> None:
        self.calls.append((notification, job))
        if self.failures:
            failure = self.failures.pop(0)
            if failure is not None:
                raise failure

    def ids(self) -> list[int]:
        return [notification.id for notification, _ in self.calls]


@dataclass
class RecordingMailer:
    sent: list[EmailMessage] = field(default_factory=list)
    error: MailError | None = None

    async def send(self, message: EmailMessage) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)


def notifier(
    store: Store, handlers: Mapping[str, Reporter], clock: FakeClock, **kw: Any
) -> Notifier:
    return Notifier(store, handlers, clock=clock, rand=lambda: 0.0, **kw)


def counted(kind: str, result: str) -> float:
    labels = {"kind": kind, "result": result}
    return metrics.REGISTRY.get_sample_value("faxgate_notifications_total", labels) or 0.0


# ---------------------------------------------------------------------------- reports


def read_report(store: Store, job: Job) -> EmailMessage:
    """The default report for the job's outbox row, composed straight from the store."""
    [row] = store.notifications(job.id)
    current = store.get_job(job.id)
    assert current is not None
    return compose_report(current, store.documents(job.id), store.events(job.id), row.payload)


def body_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    text: str = body.get_content()
    return text


def flat(text: str) -> str:
    """The text with its line breaks undone, to look for a phrase however it was wrapped."""
    return " ".join(text.split())


def test_report_of_a_sent_fax(store: Store, clock: FakeClock) -> None:
    job = send_fax(store, clock, queue_job(store))

    message = read_report(store, job)

    assert message["Subject"] == "Fax to +1 415-555-0100 sent (3 pages)"
    assert message["To"] == "alice@example.com"
    assert message["Auto-Submitted"] == AUTO_GENERATED  # a command's report answers no mail
    assert message["In-Reply-To"] is None
    assert message["X-Faxgate-Job"] == job.id
    body = body_of(message)
    assert "Your fax to +1 415-555-0100 was sent (3 pages)." in body
    for fact in (
        "Pages:",
        "contract.pdf, annex.pdf",
        f"Job:          {job.id}",
        f"Provider ID:  {GUID}",
        "Queued:       2024-05-01 10:00:00 UTC",
        "First call:   2024-05-01 10:00:01 UTC",
        "Outcome at:   2024-05-01 10:01:33 UTC",
        "  1. 2024-05-01 10:00:01 UTC  sent",
    ):
        assert fact in body, fact
    assert "Reason:" not in body
    assert "faxgate retry" not in body


def test_report_of_a_busy_line_after_four_tries(store: Store, clock: FakeClock) -> None:
    job = queue_job(store, intake=Intake.SMTP, intake_ref={"message_id": "<req-1@example.com>"})
    job = fail_busy(store, clock, job, tries=4)

    message = read_report(store, job)

    assert message["Subject"] == "Fax to +1 415-555-0100 failed: the line was busy (4 tries)"
    assert message["In-Reply-To"] == "<req-1@example.com>"
    assert message["References"] == "<req-1@example.com>"
    assert message["Auto-Submitted"] == AUTO_REPLIED  # it answers the sender's mail
    body = body_of(message)
    assert "could not be sent: the line was busy." in body
    assert "tried 4 times and has given up" in flat(body)
    assert "Reason:       the line was busy" in body
    assert "Tries:        4" in body
    # Four calls, numbered; the submission that never left is not one of them.
    tries = body.split("\nTries, one by one:\n", 1)[1]
    assert [line.split(".", 1)[0].strip() for line in tries.splitlines() if ". 20" in line] == [
        "1",
        "2",
        "3",
        "4",
    ]
    assert tries.count("the line was busy; trying again in 5m") == 3
    assert f"provider ID {1:040x}" in tries
    assert f"faxgate retry {job.id}" in body


def test_report_of_an_uncertain_fax_says_what_to_do(store: Store, clock: FakeClock) -> None:
    job = lose_the_answer(store, clock, queue_job(store))

    message = read_report(store, job)

    assert message["Subject"] == "Fax to +1 415-555-0100: not sure it was sent"
    body = body_of(message)
    assert "cannot tell whether your fax to +1 415-555-0100 was sent" in flat(body)
    assert "will not send it again on a guess" in flat(body)
    assert f"faxgate status {job.id}" in body
    assert f"faxgate retry {job.id}" in body
    assert "only when you are sure it did not arrive" in flat(body)
    assert all(len(line) <= 78 for line in body.splitlines())  # long reasons are wrapped
    assert "1. 2024-05-01 10:00:01 UTC  the provider's answer was lost" in body


def test_report_of_a_fax_presumed_sent_says_it_is_not_confirmed(
    store: Store, clock: FakeClock
) -> None:
    job = queue_job(store)
    clock.advance(seconds=1)
    store.transition(job.id, S.SUBMITTING, detail="submitting", submitted_at=clock())
    store.transition(job.id, S.SUBMITTED, detail="pending", provider_guid=GUID)
    clock.advance(seconds=60)
    store.transition(
        job.id,
        S.PRESUMED_SENT,
        detail=PRESUMED_SENT_REASON,
        reason=PRESUMED_SENT_REASON,
        notify=NewNotification(
            payload=report_payload(job, S.PRESUMED_SENT, reason=PRESUMED_SENT_REASON)
        ),
    )

    message = read_report(store, job)

    assert message["Subject"] == "Fax to +1 415-555-0100 presumably sent (not confirmed)"
    assert message["X-Faxgate-Outcome"] == "presumed_sent"
    body = flat(body_of(message))
    assert "was most probably sent: the provider removed it" in body
    assert "no callback confirmed it" in body
    assert "Outcome: presumed_sent" in body
    assert f"faxgate retry {job.id}" in body
    assert "1. 2024-05-01 10:00:01 UTC sent, as far as the provider shows" in body


def test_report_reads_the_codes_when_the_payload_has_no_reason() -> None:
    job = Job(
        id="0000000000ab",
        created_at=T0,
        updated_at=T0,
        state=S.QUEUED,  # retried by a person since: the payload tells the outcome
        intake=Intake.CLI,
        to_number="+442079460000",
        reply_to="bob@example.com",
    )
    payload = {"state": "failed", "status_code": "E", "error_code": "N", "attempts": 2}

    message = compose_report(job, [], [], payload)

    assert message["Subject"] == "Fax to +44 20 7946 0000 failed: no one answered (2 tries)"


def test_report_is_pure_and_needs_a_reply_address() -> None:
    job = Job(
        id="0000000000ab",
        created_at=T0,
        updated_at=T0,
        state=S.SENT,
        intake=Intake.CLI,
        to_number="+14155550100",
        reply_to="bob@example.com",
        pages=1,
    )
    docs = [Document(job.id, 0, "a.pdf", Path("/nowhere/a.pdf"), 1, "00", "application/pdf")]
    events = [Event(1, job.id, T0, S.QUEUED, S.SUBMITTING, "submitting")]

    first = compose_report(job, docs, events, {"state": "sent"})
    second = compose_report(job, docs, events, {"state": "sent"})

    assert first.as_string() == second.as_string()  # no clock, no randomness, no IO
    assert first["Subject"] == "Fax to +1 415-555-0100 sent (1 page)"
    assert first["Date"] is None  # the mailer dates it
    assert first["Message-ID"] is None
    with pytest.raises(ValueError, match="no reply address"):
        compose_report(replace(job, reply_to=None), docs, events, {})


def test_calls_ignore_a_submission_that_never_left() -> None:
    def event(n: int, src: JobState, dst: JobState) -> Event:
        return Event(n, "j", T0 + timedelta(minutes=n), src, dst, dst.value)

    events = [
        event(1, S.QUEUED, S.QUEUED),
        event(2, S.QUEUED, S.SUBMITTING),
        event(3, S.SUBMITTING, S.QUEUED),  # never left
        event(4, S.QUEUED, S.SUBMITTING),
        event(5, S.SUBMITTING, S.UNCERTAIN),
        event(6, S.UNCERTAIN, S.SENT),  # settled later: ends the same call
    ]

    [call] = calls(events)

    assert call.started_at == T0 + timedelta(minutes=4)
    assert call.ended is not None
    assert call.ended.to_state is S.SENT


# ---------------------------------------------------------------------------- notifier


async def test_delivered_once_and_marked(store: Store, clock: FakeClock) -> None:
    job = send_fax(store, clock, queue_job(store))
    handler = RecordingHandler()
    before = counted("report", "delivered")
    clock.advance(seconds=5)

    assert await notifier(store, {"cli": handler}, clock).deliver_once() == 1
    assert await notifier(store, {"cli": handler}, clock).deliver_once() == 0

    [(notification, seen_job)] = handler.calls
    assert notification.kind == "report"
    assert notification.payload["state"] == "sent"
    assert seen_job is not None
    assert seen_job.id == job.id
    [row] = store.notifications(job.id)
    assert row.delivered_at == clock()
    assert row.attempts == 1
    assert counted("report", "delivered") == before + 1


async def test_failing_handler_is_retried_with_growing_delay(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = send_fax(store, clock, queue_job(store))
    handler = RecordingHandler(failures=[ConnectionError("relay down")] * 3)
    n = notifier(store, {"cli": handler}, clock)

    waits = []
    for _ in range(3):
        assert await n.deliver_once() == 0
        [row] = store.notifications(job.id)
        assert row.next_attempt_at is not None
        assert row.last_error == "ConnectionError: relay down"
        waits.append(row.next_attempt_at - clock())
        clock.now = row.next_attempt_at - timedelta(seconds=1)
        assert await n.deliver_once() == 0  # not due yet: not tried
        clock.now = row.next_attempt_at
    assert waits == [timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4)]
    assert len(handler.calls) == 3

    assert await n.deliver_once() == 1

    [row] = store.notifications(job.id)
    assert row.delivered_at == clock()
    assert row.attempts == 4
    assert row.last_error is None
    assert "notification failed" in caplog.text


def test_backoff_doubles_to_an_hour_with_jitter_that_keeps_it_growing() -> None:
    backoff = DeliveryBackoff()
    plain = [backoff.delay(n, 0.0) for n in range(1, 10)]
    assert plain[:4] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert plain[-1] == timedelta(hours=1)
    assert max(plain) == timedelta(hours=1)
    for n in range(1, 7):  # the most luck can take off still leaves the next wait longer
        assert backoff.delay(n + 1, 0.999) > backoff.delay(n, 0.0)
    assert timedelta(minutes=45) <= backoff.delay(20, 0.999) < timedelta(hours=1)


async def test_permanent_failure_is_set_aside_with_its_error(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = send_fax(store, clock, queue_job(store))
    handler = RecordingHandler(failures=[PermanentFailure("the result folder is gone")])
    n = notifier(store, {"cli": handler}, clock)
    before = counted("report", "given_up")

    assert await n.deliver_once() == 0

    [row] = store.notifications(job.id)
    assert row.delivered_at is None  # not lost: still in the table
    assert row.next_attempt_at is None  # and never due again
    assert row.last_error == "the result folder is gone"
    assert counted("report", "given_up") == before + 1
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert job.id in record.getMessage()
    clock.advance(days=30)
    assert await n.deliver_once() == 0
    assert len(handler.calls) == 1


async def test_permanent_mail_error_is_set_aside(store: Store, clock: FakeClock) -> None:
    job = send_fax(store, clock, queue_job(store))
    mailer = RecordingMailer(error=MailError("550 5.1.1 no such user", permanent=True))

    assert await notifier(store, default_handlers(mailer, store), clock).deliver_once() == 0

    [row] = store.notifications(job.id)
    assert (row.next_attempt_at, row.delivered_at) == (None, None)
    assert row.last_error is not None
    assert "550 5.1.1 no such user" in row.last_error


async def test_temporary_mail_error_is_retried(store: Store, clock: FakeClock) -> None:
    job = send_fax(store, clock, queue_job(store))
    mailer = RecordingMailer(error=MailError("451 try later", permanent=False))

    await notifier(store, default_handlers(mailer, store), clock).deliver_once()

    [row] = store.notifications(job.id)
    assert row.next_attempt_at == clock() + timedelta(minutes=1)


async def test_report_with_nobody_to_tell_is_marked_delivered(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="faxgate.notifier")
    job = send_fax(store, clock, queue_job(store, reply_to=None))
    mailer = RecordingMailer()
    before = counted("report", "skipped")

    assert await notifier(store, default_handlers(mailer, store), clock).deliver_once() == 1

    assert mailer.sent == []
    [row] = store.notifications(job.id)
    assert row.delivered_at == clock()
    assert counted("report", "skipped") == before + 1
    assert f"job={job.id}" in caplog.text
    assert "no reply address" in caplog.text


async def test_default_report_lands_in_the_maildir(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    job = queue_job(store, intake=Intake.SMTP, intake_ref={"message_id": "<m1@example.com>"})
    job = fail_busy(store, clock, job, tries=2)
    # A person retries the job before the report goes out: the report still tells the
    # story up to its outcome.
    clock.advance(minutes=1)
    store.transition(job.id, S.QUEUED, detail="retried by a person", attempt=3)
    clock.advance(minutes=1)
    make_a_call(store, clock, job.id, "f" * 40)
    maildir = tmp_path / "maildir"
    mailer = MaildirMailer(maildir, from_address="fax@gateway.example", clock=clock)

    assert await notifier(store, default_handlers(mailer, store), clock).deliver_once() == 1

    [path] = (maildir / "new").iterdir()
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Fax to +1 415-555-0100 failed: the line was busy (2 tries)"
    assert message["In-Reply-To"] == "<m1@example.com>"
    assert message["From"] == "fax@gateway.example"
    body = body_of(message)
    assert "  2. " in body
    assert "  3. " not in body
    assert "f" * 40 not in body


async def test_other_kinds_go_to_the_handler_of_their_kind(store: Store, clock: FakeClock) -> None:
    store.add_notification(NewNotification(kind="mail", payload={"to": "x@example.com"}))
    handler = RecordingHandler()

    assert await notifier(store, {"mail": handler, "cli": RecordingHandler()}, clock).deliver_once()

    [(notification, job)] = handler.calls
    assert notification.kind == "mail"
    assert job is None


async def test_no_handler_is_a_temporary_failure(store: Store, clock: FakeClock) -> None:
    job = send_fax(store, clock, queue_job(store, intake=Intake.FOLDER))

    assert await notifier(store, {"cli": RecordingHandler()}, clock).deliver_once() == 0

    [row] = store.notifications(job.id)
    assert row.next_attempt_at == clock() + timedelta(minutes=1)
    assert row.last_error is not None
    assert "no handler for 'folder'" in row.last_error


async def test_report_whose_job_is_gone_is_set_aside(store: Store, clock: FakeClock) -> None:
    row = store.add_notification(NewNotification(kind="report", payload={"state": "sent"}))

    assert await notifier(store, {"cli": RecordingHandler()}, clock).deliver_once() == 0

    after = store.get_notification(row.id)
    assert after is not None
    assert after.next_attempt_at is None
    assert after.last_error == "the job it reports on is no longer in the store"


async def test_two_notifiers_never_deliver_one_row_twice(
    db_path: Path, store: Store, clock: FakeClock
) -> None:
    job = send_fax(store, clock, queue_job(store))
    entered, release = asyncio.Event(), asyncio.Event()
    delivered: list[int] = []

    async def slow(notification: Notification, job: Job | None) -> None:
        entered.set()
        await release.wait()
        delivered.append(notification.id)

    with Store.open(db_path, clock=clock) as other_store:
        first = notifier(store, {"cli": slow}, clock)
        second = notifier(other_store, {"cli": slow}, clock)
        running = asyncio.create_task(first.deliver_once())
        await asyncio.wait_for(entered.wait(), 5)
        # The row is not marked yet; the second notifier must keep its hands off it.
        assert await asyncio.wait_for(second.deliver_once(), 5) == 0
        release.set()
        assert await running == 1
        assert await second.deliver_once() == 0

    assert delivered == [store.notifications(job.id)[0].id]


async def test_concurrent_loops_deliver_every_row_exactly_once(
    db_path: Path, store: Store, clock: FakeClock
) -> None:
    for _ in range(12):
        send_fax(store, clock, queue_job(store))
    ids = [row.id for row in store.pending_notifications(clock(), 100)]
    handler = RecordingHandler()

    with Store.open(db_path, clock=clock) as other_store:
        loops = [
            notifier(s, {"cli": handler}, clock, batch=3, interval=0.01)
            for s in (store, other_store, store)
        ]
        tasks = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            for loop in loops:
                loop.wake()
            await wait_for(lambda: not store.pending_notifications(clock(), 100), what="delivery")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert sorted(handler.ids()) == sorted(ids)  # each once, none twice


async def test_a_restart_does_not_deliver_again(db_path: Path, clock: FakeClock) -> None:
    with Store.open(db_path, clock=clock) as store:
        job = send_fax(store, clock, queue_job(store))
        handler = RecordingHandler()
        assert await notifier(store, {"cli": handler}, clock).deliver_once() == 1

    with Store.open(db_path, clock=clock) as reopened:
        assert await notifier(reopened, {"cli": handler}, clock).deliver_once() == 0
        assert reopened.notifications(job.id)[0].delivered_at is not None

    assert len(handler.calls) == 1


async def test_dying_between_send_and_mark_sends_again(db_path: Path, clock: FakeClock) -> None:
    """At least once: a report sent but not yet marked goes out again after a restart."""
    sent: list[int] = []
    hang = asyncio.Event()

    async def sends_then_hangs(notification: Notification, job: Job | None) -> None:
        sent.append(notification.id)
        await hang.wait()  # the process "dies" here, before the row is marked

    with Store.open(db_path, clock=clock) as store:
        job = send_fax(store, clock, queue_job(store))
        task = asyncio.create_task(notifier(store, {"cli": sends_then_hangs}, clock).run())
        await wait_for(lambda: sent, what="the first send")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    handler = RecordingHandler()
    with Store.open(db_path, clock=clock) as reopened:
        assert await notifier(reopened, {"cli": handler}, clock).deliver_once() == 1
        [row] = reopened.notifications(job.id)

    assert handler.ids() == sent == [row.id]
    assert row.delivered_at is not None


async def test_run_delivers_on_wake_and_survives_a_failing_cycle(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = RecordingHandler()
    n = notifier(store, {"cli": handler}, clock, interval=3600)
    real_pending = store.pending_notifications
    failures = [OSError("disk I/O error")]

    def flaky_pending(now: datetime, limit: int) -> list[Notification]:
        if failures:
            raise failures.pop()
        return real_pending(now, limit)

    monkeypatch.setattr(store, "pending_notifications", flaky_pending)
    task = asyncio.create_task(n.run())
    try:
        await wait_for(lambda: not failures, what="the failing cycle")
        job = send_fax(store, clock, queue_job(store))
        n.wake()
        # Delivered is the handler called and then the row marked: both, not the call alone.
        await wait_for(
            lambda: store.notifications(job.id)[0].delivered_at is not None,
            what="delivery after wake",
        )
        assert handler.calls
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_handler_may_find_nobody_to_tell(store: Store, clock: FakeClock) -> None:
    send_fax(store, clock, queue_job(store))
    handler = RecordingHandler(failures=[NothingToDeliver("folder intake: no result file")])

    assert await notifier(store, {"cli": handler}, clock).deliver_once() == 1


async def test_a_report_mail_written_again_after_a_crash_stays_one_mail(
    db_path: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """The mail is written, then the process dies before the row is marked: the next
    start writes it again, with the same Message-ID, into the same Maildir file."""
    maildir = tmp_path / "maildir"
    mailer = MaildirMailer(maildir, from_address="fax@gateway.example", clock=clock)
    with Store.open(db_path, clock=clock) as store:
        job = send_fax(store, clock, queue_job(store, reply_to="owner@example.com"))
        handlers = default_handlers(mailer, store)
        [row] = store.notifications(job.id)
        await notifier(store, handlers, clock)._deliver(row)
        with closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
            conn.execute("UPDATE outbox SET delivered_at = NULL")  # the mark never landed
    [first] = (maildir / "new").iterdir()
    first.rename(maildir / "cur" / f"{first.name}:2,S")  # read by a mail program meanwhile

    with Store.open(db_path, clock=clock) as reopened:
        assert await notifier(reopened, default_handlers(mailer, reopened), clock).deliver_once()
        assert reopened.notifications(job.id)[0].delivered_at is not None
    assert list((maildir / "new").iterdir()) == []
    assert [path.name for path in (maildir / "cur").iterdir()] == [f"{first.name}:2,S"]


async def test_every_delivery_has_its_own_stable_message_id(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    maildir = tmp_path / "maildir"
    mailer = MaildirMailer(maildir, from_address="fax@gateway.example", clock=clock)
    jobs = [send_fax(store, clock, queue_job(store, reply_to="owner@example.com"))]
    jobs.append(send_fax(store, clock, queue_job(store, reply_to="owner@example.com")))
    assert await notifier(store, default_handlers(mailer, store), clock).deliver_once() == 2
    ids = set()
    for path in (maildir / "new").iterdir():
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        ids.add(str(message["Message-ID"]))
    rows = [store.notifications(job.id)[0] for job in jobs]
    assert ids == {f"<faxgate.{row.job_id}.{row.id}@gateway.example>" for row in rows}
