"""Every metric faxgate keeps, in one registry that /metrics serves.

Counters are named for what happened (``faxgate_api_requests_total``); gauges are read at
scrape time from the store, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from faxgate.domain.jobs import JobState

REGISTRY = CollectorRegistry(auto_describe=True)

api_requests = Counter(
    "faxgate_api_requests",
    "Requests to the fax provider's API, by endpoint and outcome (HTTP status or error).",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
submissions = Counter(
    "faxgate_submissions",
    "Attempts to hand a fax to the provider, by result "
    "(submitted, retry, rate_limited, refused, ambiguous).",
    ["result"],
    registry=REGISTRY,
)
callbacks = Counter(
    "faxgate_callbacks",
    "Provider callbacks received, by direction and how they were handled.",
    ["direction", "result"],
    registry=REGISTRY,
)
outcomes = Counter(
    "faxgate_outcomes",
    "Faxes that reached an outcome, by state and reason code.",
    ["state", "reason"],
    registry=REGISTRY,
)
notifications = Counter(
    "faxgate_notifications",
    "Notifications delivered or failed, by kind and result.",
    ["kind", "result"],
    registry=REGISTRY,
)
polls = Counter(
    "faxgate_polls",
    "Poll cycles, by how they read the provider (one_by_one or list).",
    ["mode"],
    registry=REGISTRY,
)
smtp_accepted = Counter(
    "faxgate_smtp_accepted",
    "Messages the SMTP listener accepted (each queued one fax per recipient).",
    registry=REGISTRY,
)
smtp_refused = Counter(
    "faxgate_smtp_refused",
    "SMTP commands and messages the listener refused, by reason "
    "(relay, bad_number, too_big, daily_limit, storage, ...).",
    ["reason"],
    registry=REGISTRY,
)
smtp_auth_throttled = Counter(
    "faxgate_smtp_auth_throttled",
    "SMTP logins slowed down or refused after failed ones from the same address, "
    "by action (delayed, refused).",
    ["action"],
    registry=REGISTRY,
)
inbound_received = Counter(
    "faxgate_inbound_received",
    "Inbound fax callbacks taken, by result (stored, stored_without_document, duplicate, ignored).",
    ["result"],
    registry=REGISTRY,
)
inbound_delivered = Counter(
    "faxgate_inbound_delivered",
    "Inbound fax deliveries done, by kind (email, folder).",
    ["kind"],
    registry=REGISTRY,
)
folder_files_taken = Counter(
    "faxgate_folder_files_taken",
    "Files the hot folders took and queued as faxes, by folder.",
    ["folder"],
    registry=REGISTRY,
)
documents_removed = Counter(
    "faxgate_documents_removed",
    "Documents [retention] documents removed, by what they belonged to (job, inbound).",
    ["kind"],
    registry=REGISTRY,
)
folder_files_refused = Counter(
    "faxgate_folder_files_refused",
    "Files the hot folders refused into failed/, by reason "
    "(no_number, bad_number, sidecar, type, empty, content, size, symlink, not_a_file, ...).",
    ["reason"],
    registry=REGISTRY,
)


def count_api_request(endpoint: str, outcome: int | str) -> None:
    """The HelloFax client's `on_request` hook."""
    api_requests.labels(endpoint=endpoint, outcome=str(outcome)).inc()


class JobsCollector(Collector):
    """Jobs by state, read from the store at scrape time, so never stale."""

    def __init__(self, count_by_state: Callable[[], Mapping[JobState, int]]) -> None:
        self._count_by_state = count_by_state

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("faxgate_jobs", "Jobs in the store, by state.", labels=["state"])
        counts = self._count_by_state()
        for state in JobState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family


@contextmanager
def _serving(collector: Collector) -> Iterator[None]:
    """Serve a collector's metrics while the context lasts."""
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)


def watching_jobs(
    count_by_state: Callable[[], Mapping[JobState, int]],
) -> AbstractContextManager[None]:
    """Serve jobs by state from this source while the context lasts."""
    return _serving(JobsCollector(count_by_state))


_QUEUE_AGE = "faxgate_oldest_queued_seconds"
_QUEUE_AGE_HELP = "Seconds the oldest queued job that is due has waited to be sent (0: none waits)."


class QueueAgeCollector(Collector):
    """The age of the oldest pending job (queued and due), read at scrape time."""

    def __init__(self, oldest_due_seconds: Callable[[], float]) -> None:
        self._oldest_due_seconds = oldest_due_seconds

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_QUEUE_AGE, _QUEUE_AGE_HELP)  # no store read at registration

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_QUEUE_AGE, _QUEUE_AGE_HELP, value=self._oldest_due_seconds())


_WAITING = "faxgate_jobs_waiting"
_WAITING_HELP = (
    "Queued jobs not sent yet, by why: hours (a rule's window), sender_limit, retry (a"
    " call tried again later), turn (behind another fax to the same number), error (the"
    " sending rules could not judge it)."
)


class WaitingCollector(Collector):
    """Waiting jobs by why, read from the store at scrape time."""

    def __init__(self, count_waiting: Callable[[], Mapping[str, int]]) -> None:
        self._count_waiting = count_waiting

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_WAITING, _WAITING_HELP, labels=["reason"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(_WAITING, _WAITING_HELP, labels=["reason"])
        for reason, count in self._count_waiting().items():
            family.add_metric([reason], count)
        yield family


def watching_waits(count_waiting: Callable[[], Mapping[str, int]]) -> AbstractContextManager[None]:
    """Serve the waiting jobs by why from this source while the context lasts."""
    return _serving(WaitingCollector(count_waiting))


def watching_queue_age(oldest_due_seconds: Callable[[], float]) -> AbstractContextManager[None]:
    """Serve the queue's age from this source while the context lasts."""
    return _serving(QueueAgeCollector(oldest_due_seconds))


_ALIVE = "faxgate_instances_alive"
_ALIVE_HELP = "Instances sharing the PostgreSQL store seen alive (their heartbeat recent)."
_HELD = "faxgate_instance_held_jobs"
_HELD_HELP = "Jobs an instance alive holds now (being sent, or claimed to be sent), by instance."


class Member(Protocol):
    """What the metrics read of an instance sharing the store (the store's Member)."""

    @property
    def owner(self) -> str: ...
    @property
    def alive(self) -> bool: ...
    @property
    def held_jobs(self) -> int: ...


class ClusterCollector(Collector):
    """The instances sharing a PostgreSQL store, read from the store at scrape time."""

    def __init__(self, members: Callable[[], Sequence[Member]]) -> None:
        self._members = members

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_ALIVE, _ALIVE_HELP)  # no store read at registration
        yield GaugeMetricFamily(_HELD, _HELD_HELP, labels=["instance"])

    def collect(self) -> Iterator[Metric]:
        alive = [member for member in self._members() if member.alive]
        yield GaugeMetricFamily(_ALIVE, _ALIVE_HELP, value=len(alive))
        held = GaugeMetricFamily(_HELD, _HELD_HELP, labels=["instance"])
        for member in alive:
            held.add_metric([member.owner], member.held_jobs)
        yield held


def watching_cluster(members: Callable[[], Sequence[Member]]) -> AbstractContextManager[None]:
    """Serve the cluster's instances from this source while the context lasts."""
    return _serving(ClusterCollector(members))
