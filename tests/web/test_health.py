"""Health: the rules on their own, the store probe on a real SQLite file, and /healthz and
the queue age on /metrics of a whole daemon over real HTTP."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from faxgate.app import Daemon, started
from faxgate.domain.jobs import Intake, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.store import NewJob, Store
from faxgate.store.postgres import PostgresProbe
from faxgate.store.probe import DueJob, StoreNotWritable, StoreProbe
from faxgate.web.health import (
    ClusterLook,
    Health,
    HealthThresholds,
    ProviderHealth,
    is_provider_failure,
    provider_problem,
    queue_problem,
)
from tests.conftest import wait_for
from tests.daemon import fast_settings, queue, settled
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
QUICK = HealthThresholds(
    provider_down_after=timedelta(seconds=0.3), store_lock_wait=timedelta(seconds=0.2)
)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# ---------------------------------------------------------------------- the provider


@pytest.mark.parametrize(
    ("outcome", "failure"),
    [
        (200, False),
        (201, False),
        (404, False),  # an answer: the provider is there
        (401, False),
        (429, False),
        (500, True),
        (502, True),
        (503, True),
        ("ConnectError", True),
        ("ReadTimeout", True),
    ],
)
def test_what_counts_as_the_provider_unreachable(outcome: int | str, failure: bool) -> None:
    assert is_provider_failure(outcome) is failure


def test_the_provider_is_down_after_failures_in_a_row_for_long_enough() -> None:
    clock = Clock()
    provider = ProviderHealth(clock)
    rules = HealthThresholds()  # 3 in a row, for 2 minutes
    assert provider_problem(provider.seen, clock(), rules) is None  # nothing seen yet

    provider.observe("send", 200)
    provider.observe("send", "ConnectError")
    clock.advance(60)
    provider.observe("send", 503)
    clock.advance(60)
    assert provider_problem(provider.seen, clock(), rules) is None  # two only
    provider.observe("send", "ConnectError")
    assert provider.seen.failures_in_a_row == 3
    assert provider_problem(provider.seen, clock(), rules) is None  # 3, but for 120 s...
    clock.advance(0.5)
    problem = provider_problem(provider.seen, clock(), rules)
    assert problem is not None
    assert "last 3 requests" in problem
    assert "send -> ConnectError" in problem
    assert provider.seen.last_success_at == T0


def test_any_answer_below_500_ends_the_outage() -> None:
    clock = Clock()
    provider = ProviderHealth(clock)
    for _ in range(5):
        provider.observe("get_transmission", 500)
        clock.advance(60)
    assert provider_problem(provider.seen, clock(), HealthThresholds()) is not None
    provider.observe("get_transmission", 404)
    seen = provider.seen
    assert (seen.failures_in_a_row, seen.failing_since, seen.last_success_at) == (0, None, clock())
    assert provider_problem(seen, clock(), HealthThresholds()) is None
    # A new streak counts from its own first failure.
    provider.observe("send", 500)
    assert provider.seen.failing_since == clock()


def test_the_queue_is_stuck_when_a_job_has_been_due_too_long() -> None:
    rules = HealthThresholds()  # 15 minutes
    assert queue_problem(None, T0, rules) is None
    oldest = DueJob(id="job1", due_since=T0, reason="waiting: <refused>", due=4)
    assert queue_problem(oldest, T0 + timedelta(minutes=14), rules) is None
    problem = queue_problem(oldest, T0 + timedelta(minutes=16), rules)
    assert problem is not None
    assert "job job1 has been due for 16 min" in problem
    assert "(waiting: <refused>)" in problem
    assert "4 due in all" in problem


# ---------------------------------------------------------------------- the store probe


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "faxgate.sqlite3") as opened:
        yield opened


def new_job(number: str = "+14155550123", not_before: datetime | None = None) -> NewJob:
    return NewJob(to_number=number, intake=Intake.CLI, not_before=not_before)


def test_the_probe_commits_a_write_that_changes_nothing(store: Store) -> None:
    wal = store.path.with_name(store.path.name + "-wal")
    before = store.pragmas()
    size = wal.stat().st_size
    StoreProbe(store.path).check_writable()
    assert wal.stat().st_size > size  # a frame reached the WAL
    assert store.pragmas() == before  # the schema version is what it was
    store.create_jobs([new_job()])  # and the store's own connection writes on


def test_the_probe_says_when_another_writer_holds_the_lock(store: Store) -> None:
    holder = sqlite3.connect(store.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreNotWritable, match="locked: another writer has held it"):
            StoreProbe(store.path).check_writable(timedelta(seconds=0.1))
    finally:
        holder.close()
    StoreProbe(store.path).check_writable(timedelta(seconds=0.1))


def test_the_probe_never_makes_a_missing_store(tmp_path: Path) -> None:
    missing = tmp_path / "gone.sqlite3"
    with pytest.raises(StoreNotWritable, match="cannot be opened"):
        StoreProbe(missing).check_writable()
    assert not missing.exists()


# Which job is the oldest due, and for how long: tests/store/test_probe.py, on SQLite and
# PostgreSQL.


async def test_a_stuck_queue_is_not_blamed_while_the_provider_is_down(store: Store) -> None:
    now = datetime.now(UTC)
    clock = Clock(now)
    provider = ProviderHealth(clock)
    health = Health(StoreProbe(store.path), provider, clock=clock)
    (job,) = store.create_jobs([new_job()], now=now - timedelta(minutes=16))

    report = await health.check()
    assert not report.healthy
    assert len(report.problems) == 1
    assert f"job {job.id} has been due for 16 min" in report.problems[0]
    assert report.checks["queue"]["oldest_due_job"] == job.id

    for _ in range(3):
        provider.observe("send", "ConnectError")
        clock.advance(60)
    report = await health.check()
    assert len(report.problems) == 1
    assert "the provider has not answered" in report.problems[0]
    assert report.checks["queue"]["ok"] is True
    assert "not judged" in str(report.checks["queue"]["note"])


async def test_faxes_presumed_sent_while_callbacks_are_set_up_are_overdue_callbacks(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    clock = Clock(now)
    health = Health(StoreProbe(store.path), ProviderHealth(clock), clock=clock)
    assert "callbacks" not in (await health.check()).checks  # none set up: not judged
    health.callbacks_expected = True

    def presumed(ago: timedelta) -> str:
        (job,) = store.create_jobs([new_job()], now=now - ago - timedelta(minutes=5))
        at = now - ago
        store.transition(job.id, JobState.SUBMITTING, detail="t", now=at)
        store.transition(job.id, JobState.SUBMITTED, detail="t", now=at, provider_guid=job.id)
        store.transition(job.id, JobState.PRESUMED_SENT, detail="gone", now=at)
        return job.id

    presumed(timedelta(minutes=5))  # a late callback may still come
    presumed(timedelta(hours=50))  # the provider gave up on it long ago
    report = await health.check()
    assert report.healthy
    assert report.checks["callbacks"] == {"ok": True, "overdue": 0, "overdue_jobs": []}

    overdue = presumed(timedelta(minutes=30))
    report = await health.check()
    assert not report.healthy
    assert report.checks["callbacks"]["overdue_jobs"] == [overdue]
    (problem,) = report.problems
    assert problem.startswith("callbacks are not arriving: 1 fax(es) ended presumed sent")
    assert overdue in problem
    assert "http.public_url" in problem


# ---------------------------------------------------------------------- a whole daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with started(fast_settings(tmp_path / "state")) as running:
        assert running.health is not None
        running.health.thresholds = QUICK
        yield running


def the_sandbox(daemon: Daemon) -> Sandbox:
    assert isinstance(daemon.sandbox, Sandbox)
    return daemon.sandbox


async def get(daemon: Daemon, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(f"http://127.0.0.1:{daemon.http.port}{path}")


async def health_turns(daemon: Daemon, status: int, what: str) -> dict[str, Any]:
    async def answer() -> dict[str, Any] | None:
        got = await get(daemon, "/healthz")
        body: dict[str, Any] = got.json()
        return body if got.status_code == status else None

    body: dict[str, Any] = await wait_for(answer, timeout=20, interval=0.05, what=what)
    return body


async def test_a_healthy_daemon_answers_200_with_its_checks(daemon: Daemon) -> None:
    (job,) = await settled(daemon, [await queue(daemon, "+14155550123")])
    assert job.state is JobState.SENT
    answer = await get(daemon, "/healthz")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["status"] == "ok"
    assert "problems" not in body
    checks = body["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "store": True,
        "provider": True,
        "queue": True,
        "callbacks": True,  # the built-in sandbox posts them
    }
    assert checks["callbacks"]["overdue"] == 0
    assert checks["provider"]["failures_in_a_row"] == 0
    assert checks["provider"]["last_success_at"] is not None
    assert checks["queue"]["due"] == 0


async def test_health_turns_503_while_the_provider_is_down_and_back(daemon: Daemon) -> None:
    sandbox = the_sandbox(daemon)
    sandbox.faults.error_rate = 1.0
    sandbox.faults.error_statuses = [500, 503]
    job = await queue(daemon, "+14155550123")

    body = await health_turns(daemon, 503, "/healthz to see the provider down")
    assert body["status"] == "unhealthy"
    assert any("the provider has not answered" in p for p in body["problems"]), body
    assert body["checks"]["provider"]["ok"] is False
    assert body["checks"]["provider"]["last_outcome"] in (500, 503)
    assert body["checks"]["store"]["ok"] is True

    sandbox.faults.error_rate = 0.0
    body = await health_turns(daemon, 200, "/healthz to see the provider back")
    assert body["status"] == "ok"
    (ended,) = await settled(daemon, [job])
    assert ended.state is JobState.SENT


async def test_health_turns_503_when_the_store_cannot_be_written(daemon: Daemon) -> None:
    holder = sqlite3.connect(daemon.settings.database_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a stuck writer, say a forgotten sqlite3 shell
        answer = await get(daemon, "/healthz")
        assert answer.status_code == 503
        body = answer.json()
        assert body["checks"]["store"]["ok"] is False
        assert any("the store is locked" in p for p in body["problems"]), body
    finally:
        holder.close()
    assert (await get(daemon, "/healthz")).status_code == 200


async def scraped_queue_age(daemon: Daemon) -> float:
    answer = await get(daemon, "/metrics")
    assert answer.status_code == 200
    for family in text_string_to_metric_families(answer.text):
        if family.name == "faxgate_oldest_queued_seconds":
            (sample,) = family.samples
            return float(sample.value)
    raise AssertionError("faxgate_oldest_queued_seconds is not on /metrics")


async def test_a_stuck_queue_shows_on_metrics_and_healthz(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "state", dispatch={"max_in_flight": 1})
    async with started(settings) as daemon:
        assert daemon.health is not None
        assert await scraped_queue_age(daemon) == 0.0
        # One fax held at the provider fills the only place in flight ...
        the_sandbox(daemon).faults.stall_faxes = True
        first = await queue(daemon, "+14155550123")
        await wait_for(
            lambda: (j := daemon.store.get_job(first.id)) and j.state is JobState.SUBMITTED,
            what="the first fax to be submitted",
        )
        # ... so one queued twenty minutes ago waits behind it.
        now = datetime.now(UTC)
        (waiting,) = daemon.store.create_jobs([new_job()], now=now - timedelta(minutes=20))
        daemon.dispatcher.wake()

        assert 1200 <= await scraped_queue_age(daemon) < 1300
        answer = await get(daemon, "/healthz")
        assert answer.status_code == 503
        (problem,) = answer.json()["problems"]
        assert f"job {waiting.id} has been due for 20 min" in problem
        assert answer.json()["checks"]["provider"]["ok"] is True

        daemon.store.transition(waiting.id, JobState.CANCELLED, detail="test")
        assert await scraped_queue_age(daemon) == 0.0
        assert (await get(daemon, "/healthz")).status_code == 200


async def test_a_postgresql_store_is_judged_as_the_file_is(postgres_url: str) -> None:
    """The store's own probe: a write committed and the queue read on a connection of its
    own; a database out of reach is a problem in plain words, never a crash."""
    now = datetime.now(UTC)
    with Store.open_url(postgres_url) as shared:
        (job,) = shared.create_jobs([new_job()], now=now - timedelta(minutes=16))
        report = await Health(shared.probe(), ProviderHealth(), clock=Clock(now)).check()
    assert report.checks["store"]["ok"] is True
    assert report.checks["queue"]["oldest_due_job"] == job.id

    away = PostgresProbe("postgresql://faxgate@127.0.0.1:1/faxgate")
    report = await Health(away, ProviderHealth(), clock=Clock(now)).check()
    assert not report.healthy
    assert report.checks["store"]["ok"] is False
    assert any("cannot be reached" in problem for problem in report.problems), report.problems
    assert report.checks["queue"]["ok"] is False


async def test_an_instance_sharing_the_store_names_itself_and_counts_those_alive(
    store: Store,
) -> None:
    now = datetime.now(UTC)
    seen: list[datetime] = []

    def alive(at: datetime) -> int:
        seen.append(at)
        return 3

    look = ClusterLook("gw1:41:ab", alive)
    report = await Health(store.probe(), ProviderHealth(), clock=Clock(now), cluster=look).check()
    assert report.healthy
    assert report.checks["instances"] == {"ok": True, "instance": "gw1:41:ab", "alive": 3}
    assert seen == [now]

    def unreadable(at: datetime) -> int:
        raise OSError("the database went away")

    away = ClusterLook("gw1:41:ab", unreadable)
    report = await Health(store.probe(), ProviderHealth(), clock=Clock(now), cluster=away).check()
    assert not report.healthy
    assert report.checks["instances"]["ok"] is False
    assert "the instances cannot be read: the database went away" in report.problems
    # Alone (SQLite): no such check.
    alone = await Health(store.probe(), ProviderHealth(), clock=Clock(now)).check()
    assert "instances" not in alone.checks
