"""The soak run in its quick form (bench/bench_soak.py --quick): mail and hot folder at
once, the daemon SIGKILLed twice, the sandbox misbehaving; every promise audited."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_promise_holds_through_kills_and_faults(tmp_path: Path) -> None:
    figures = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.bench_soak", "--quick", "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(figures.read_text())
    assert report["problems"] == [], report["problems"]
