"""Every metric faxgate keeps, in one registry that /metrics serves.

Counters are named for what happened (``faxgate_api_requests_total``); gauges are read at
scrape time from the store, so they are never stale.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

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
jobs_by_state = Gauge(
    "faxgate_jobs",
    "Jobs in the store, by state.",
    ["state"],
    registry=REGISTRY,
)
