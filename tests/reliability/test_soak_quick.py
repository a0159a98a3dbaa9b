"""The soak run in its quick form (bench/bench_soak.py --quick): mail and hot folder at
once, the daemon SIGKILLed twice, the sandbox misbehaving; every promise audited."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.soak import quick_soak


def test_every_promise_holds_through_kills_and_faults(tmp_path: Path) -> None:
    report = quick_soak(tmp_path)
    assert report["problems"] == [], report["problems"]
