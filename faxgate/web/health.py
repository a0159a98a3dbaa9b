"""Is faxgate able to do its work? What /healthz answers and the status page shows.

Three checks, each in plain words when it fails:
- the store: a real write is committed to the SQLite file (see `StoreProbe.check_writable`),
  so a full disk, a read-only file system or a writer that holds the lock shows here;
- the provider: what the last API requests found (`ProviderHealth`, fed by the HelloFax
  client's `on_request` hook). faxgate does not call the provider just to answer a health
  check: while idle, the check says what the last request found;
- the queue: the queued job that has been due the longest has not waited too long. Jobs
  waiting for their `not_before` (a retry later, a busy line) are not due, so not stuck;
  and while the provider is down the queue waits for it, which is that check's problem;
- callbacks (only when they are set up): no fax ended presumed sent (the provider removed
  it, and no callback came) in the last two days, longer ago than a late callback needs.
  Each such fax means the provider's callbacks do not reach faxgate.

The thresholds below are the defaults of `HealthThresholds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from faxgate.clock import spoken_duration, utc_now
from faxgate.store.probe import (
    STORE_LOCK_WAIT,
    DueJob,
    OverdueCallbacks,
    StoreNotWritable,
    StoreProbe,
)

__all__ = [
    "CALLBACK_OVERDUE_AFTER",
    "PROVIDER_DOWN_AFTER",
    "PROVIDER_FAILURES_IN_A_ROW",
    "QUEUE_STUCK_AFTER",
    "Health",
    "HealthReport",
    "HealthThresholds",
    "ProviderHealth",
    "ProviderSeen",
    "callbacks_problem",
    "is_provider_failure",
    "provider_problem",
    "queue_problem",
]

log = logging.getLogger("faxgate.health")

# The provider is down when this many requests in a row got no answer or a 5xx ...
PROVIDER_FAILURES_IN_A_ROW: Final = 3
# ... and the first of them is older than this (a blip of a few seconds is not an outage).
PROVIDER_DOWN_AFTER: Final = timedelta(minutes=2)
# The queue is stuck when a job has been due longer than this while the provider answers.
# The dispatcher takes due jobs within seconds; only a pause (rate limits, a refused
# account) or a full pipeline of 200 faxes in flight makes one wait this long.
QUEUE_STUCK_AFTER: Final = timedelta(minutes=15)
# A fax presumed sent this long ago is a callback overdue: the provider retries a callback
# first after 15 minutes, so a late one has had its chance by then.
CALLBACK_OVERDUE_AFTER: Final = timedelta(minutes=20)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    provider_failures_in_a_row: int = PROVIDER_FAILURES_IN_A_ROW
    provider_down_after: timedelta = PROVIDER_DOWN_AFTER
    queue_stuck_after: timedelta = QUEUE_STUCK_AFTER
    store_lock_wait: timedelta = STORE_LOCK_WAIT
    callback_overdue_after: timedelta = CALLBACK_OVERDUE_AFTER


# ---------------------------------------------------------------------- the provider


def is_provider_failure(outcome: int | str) -> bool:
    """Whether an API request's outcome means the provider was not reachable.

    The client reports an HTTP status, or the name of the transport error when there was
    no answer. Any answer below 500 (a 4xx included) means the provider is there.
    """
    return isinstance(outcome, str) or outcome >= 500


@dataclass(frozen=True, slots=True)
class ProviderSeen:
    """What the last API requests found."""

    last_request_at: datetime | None = None
    last_endpoint: str | None = None
    last_outcome: int | str | None = None
    last_success_at: datetime | None = None
    failures_in_a_row: int = 0
    failing_since: datetime | None = None  # the first failure of the current streak


class ProviderHealth:
    """Keeps what the HelloFax client's requests found; `observe` is its `on_request` hook.

    Called from the event loop only (the client is async), so no lock.
    """

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._seen = ProviderSeen()

    def observe(self, endpoint: str, outcome: int | str) -> None:
        now = self._clock()
        seen = self._seen
        if is_provider_failure(outcome):
            self._seen = ProviderSeen(
                last_request_at=now,
                last_endpoint=endpoint,
                last_outcome=outcome,
                last_success_at=seen.last_success_at,
                failures_in_a_row=seen.failures_in_a_row + 1,
                failing_since=seen.failing_since or now,
            )
        else:
            self._seen = ProviderSeen(
                last_request_at=now,
                last_endpoint=endpoint,
                last_outcome=outcome,
                last_success_at=now,
            )

    @property
    def seen(self) -> ProviderSeen:
        return self._seen


def provider_problem(seen: ProviderSeen, now: datetime, thresholds: HealthThresholds) -> str | None:
    """Why the provider counts as down, or None."""
    since = seen.failing_since
    if since is None or seen.failures_in_a_row < thresholds.provider_failures_in_a_row:
        return None
    if now - since <= thresholds.provider_down_after:
        return None
    return (
        f"the provider has not answered the last {seen.failures_in_a_row} requests"
        f" for {spoken_duration(now - since)} (last: {seen.last_endpoint} -> {seen.last_outcome})"
    )


def callbacks_problem(overdue: OverdueCallbacks) -> str | None:
    """Why callbacks count as not arriving, or None."""
    if not overdue.count:
        return None
    more = (
        f" and {overdue.count - len(overdue.job_ids)} more"
        if overdue.count > len(overdue.job_ids)
        else ""
    )
    return (
        f"callbacks are not arriving: {overdue.count} fax(es) ended presumed sent (the"
        " provider removed them and no callback confirmed them):"
        f" {', '.join(overdue.job_ids)}{more}; check that the provider reaches the callback"
        " URL (http.public_url)"
    )


def queue_problem(oldest: DueJob | None, now: datetime, thresholds: HealthThresholds) -> str | None:
    """Why the queue counts as stuck, or None. Only asked while the provider is up."""
    if oldest is None or oldest.waited(now) <= thresholds.queue_stuck_after:
        return None
    why = f" ({oldest.reason})" if oldest.reason else ""
    return (
        f"the queue is stuck: job {oldest.id} has been due for"
        f" {spoken_duration(oldest.waited(now))}"
        f" and is not sent{why}; {oldest.due} due in all"
    )


# ---------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class HealthReport:
    checked_at: datetime
    problems: tuple[str, ...]
    checks: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, object]:
        if self.healthy:
            return {"status": "ok", "checks": dict(self.checks)}
        return {"status": "unhealthy", "problems": list(self.problems), "checks": dict(self.checks)}


@dataclass(frozen=True, slots=True)
class ClusterLook:
    """An instance sharing a PostgreSQL store: its own name, and how to count the
    instances alive at a moment (a read of the store)."""

    instance: str
    alive: Callable[[datetime], int]


@dataclass(frozen=True, slots=True)
class _StoreLook:
    writable_problem: str | None
    oldest: DueJob | None
    queue_unreadable: str | None


class Health:
    """Runs the three checks; `thresholds` may be changed while running (tests do)."""

    def __init__(
        self,
        probe: StoreProbe,
        provider: ProviderHealth,
        *,
        thresholds: HealthThresholds | None = None,
        clock: Callable[[], datetime] = utc_now,
        callbacks_expected: bool = False,
        cluster: ClusterLook | None = None,
    ) -> None:
        self.cluster = cluster
        self.probe = probe
        self.provider = provider
        self.callbacks_expected = callbacks_expected
        self.thresholds = thresholds or HealthThresholds()
        self._clock = clock
        self._was_healthy = True

    async def check(self) -> HealthReport:
        now = self._clock()
        look = await asyncio.to_thread(self._look_at_store, now)
        seen = self.provider.seen
        problems: list[str] = []

        store_check: dict[str, object] = {"ok": look.writable_problem is None}
        if look.writable_problem is not None:
            problems.append(look.writable_problem)
            store_check["problem"] = look.writable_problem

        down = provider_problem(seen, now, self.thresholds)
        provider_check: dict[str, object] = {
            "ok": down is None,
            "last_request_at": _iso(seen.last_request_at),
            "last_endpoint": seen.last_endpoint,
            "last_outcome": seen.last_outcome,
            "last_success_at": _iso(seen.last_success_at),
            "failures_in_a_row": seen.failures_in_a_row,
        }
        if down is not None:
            problems.append(down)
            provider_check["problem"] = down

        queue_check = self._queue_check(look, now, provider_down=down is not None)
        if isinstance(queue_check.get("problem"), str):
            problems.append(str(queue_check["problem"]))

        checks: dict[str, Mapping[str, object]] = {
            "store": store_check,
            "provider": provider_check,
            "queue": queue_check,
        }
        if self.callbacks_expected:
            callbacks_check = await self._callbacks_check(now)
            if isinstance(callbacks_check.get("problem"), str):
                problems.append(str(callbacks_check["problem"]))
            checks["callbacks"] = callbacks_check

        if self.cluster is not None:
            instances_check = await self._instances_check(self.cluster, now)
            if isinstance(instances_check.get("problem"), str):
                problems.append(str(instances_check["problem"]))
            checks["instances"] = instances_check

        report = HealthReport(checked_at=now, problems=tuple(problems), checks=checks)
        self._log_change(report)
        return report

    async def _callbacks_check(self, now: datetime) -> dict[str, object]:
        try:
            overdue = await asyncio.to_thread(
                self.probe.overdue_callbacks, now, self.thresholds.callback_overdue_after
            )
        except self.probe.errors as exc:
            return {"ok": False, "problem": f"overdue callbacks cannot be read: {exc}"}
        check: dict[str, object] = {
            "ok": not overdue.count,
            "overdue": overdue.count,
            "overdue_jobs": list(overdue.job_ids),
        }
        problem = callbacks_problem(overdue)
        if problem is not None:
            check["problem"] = problem
        return check

    @staticmethod
    async def _instances_check(cluster: ClusterLook, now: datetime) -> dict[str, object]:
        """This instance's name and the count of those alive (itself among them)."""
        try:
            alive = await asyncio.to_thread(cluster.alive, now)
        except Exception as exc:  # the store's check says why, in its words
            return {
                "ok": False,
                "instance": cluster.instance,
                "problem": f"the instances cannot be read: {exc}",
            }
        return {"ok": True, "instance": cluster.instance, "alive": alive}

    def _log_change(self, report: HealthReport) -> None:
        """Once when health turns bad, once when it is back: a monitor asks every few seconds."""
        if self._was_healthy and not report.healthy:
            log.warning("unhealthy problems=%r", "; ".join(report.problems))
        elif report.healthy and not self._was_healthy:
            log.info("healthy again")
        self._was_healthy = report.healthy

    def _look_at_store(self, now: datetime) -> _StoreLook:
        try:
            self.probe.check_writable(self.thresholds.store_lock_wait)
            writable_problem = None
        except StoreNotWritable as exc:
            writable_problem = str(exc)
        try:
            return _StoreLook(writable_problem, self.probe.oldest_due(now), None)
        except self.probe.errors as exc:
            return _StoreLook(writable_problem, None, f"the queue cannot be read: {exc}")

    def _queue_check(
        self, look: _StoreLook, now: datetime, *, provider_down: bool
    ) -> dict[str, object]:
        if look.queue_unreadable is not None:
            return {"ok": False, "problem": look.queue_unreadable}
        oldest = look.oldest
        check: dict[str, object] = {
            "ok": True,
            "due": 0 if oldest is None else oldest.due,
            "oldest_due_job": None if oldest is None else oldest.id,
            "oldest_due_seconds": 0.0
            if oldest is None
            else round(oldest.waited(now).total_seconds(), 1),
        }
        if provider_down:
            check["note"] = "not judged while the provider is down: the queue waits for it"
            return check
        stuck = queue_problem(oldest, now, self.thresholds)
        if stuck is not None:
            check["ok"] = False
            check["problem"] = stuck
        return check


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")
