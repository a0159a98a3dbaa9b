"""The soak run on two instances sharing a PostgreSQL store, in its quick form
(bench/bench_soak.py --instances 2 --quick, about 30 s): mail and hot folders spread over
them, callbacks to the first, the first SIGKILLed twice and the second killed for good;
every promise audited in the shared database."""

from __future__ import annotations

from pathlib import Path

from tests import peers
from tests.reliability.soak import quick_soak


def test_every_promise_holds_across_two_instances_killed(tmp_path: Path) -> None:
    peers.command("pg_ctlcluster")  # fails naming the package when PostgreSQL is absent
    report = quick_soak(tmp_path, "--instances", "2")
    assert report["problems"] == [], report["problems"]
    assert report["figures"]["sent twice by accident"] == "0"
    assert "killed for good" in report["figures"]["instances"]
