"""The status page's chart: faxes ended and received per UTC hour, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from faxgate.domain.inbound import NewInboundFax
from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewJob, Store

S = JobState


def test_faxes_are_counted_by_the_hour_they_ended_or_arrived(store: Store) -> None:
    base = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)

    def ended(state: JobState, at: datetime) -> None:
        (job,) = store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)], now=at)
        if state is S.FAILED:
            store.transition(job.id, state, detail="x", now=at)
        else:
            store.transition(job.id, S.SUBMITTING, detail="x", now=at)
            store.transition(job.id, S.SUBMITTED, detail="x", now=at)
            store.transition(job.id, state, detail="x", now=at)

    ended(S.SENT, base)
    ended(S.SENT, base + timedelta(minutes=40))
    ended(S.PRESUMED_SENT, base + timedelta(hours=1))
    ended(S.FAILED, base + timedelta(hours=1, minutes=5))
    ended(S.FAILED, base - timedelta(days=2))  # before the window
    store.create_jobs([NewJob(to_number="+14155550123", intake=Intake.CLI)], now=base)
    store.record_inbound(
        NewInboundFax(
            provider_guid="in-x",
            to_number="+1",
            from_number=None,
            pages=1,
            arrived_at=None,
            route="r",
            document=None,
        ),
        now=base + timedelta(minutes=44),
    )
    counts = store.hour_counts(base - timedelta(hours=5))
    assert counts.sent == {"2024-05-01T10": 2, "2024-05-01T11": 1}
    assert counts.failed == {"2024-05-01T11": 1}
    assert counts.received == {"2024-05-01T10": 1}
