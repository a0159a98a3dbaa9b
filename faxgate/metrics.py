"""Every metric faxgate keeps, in one registry that /metrics serves.

Counters are named for what happened (``faxgate_api_requests_total``); gauges are read at
scrape time from the store, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

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
def watching_jobs(count_by_state: Callable[[], Mapping[JobState, int]]) -> Iterator[None]:
    """Serve jobs by state from this source while the context lasts."""
    collector = JobsCollector(count_by_state)
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)
