"""The soak run on two instances sharing a PostgreSQL store, in its quick form
(bench/bench_soak.py --instances 2 --quick, about 30 s): mail and hot folders spread over
them, callbacks to the first, the first SIGKILLed twice and the second killed for good;
every promise audited in the shared database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import peers

REPO = Path(__file__).resolve().parents[2]


def test_every_promise_holds_across_two_instances_killed(tmp_path: Path) -> None:
    peers.command("pg_ctlcluster")  # fails naming the package when PostgreSQL is absent
    figures = tmp_path / "soak.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_soak",
            "--instances",
            "2",
            "--quick",
            "--json",
            str(figures),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = json.loads(figures.read_text())
    assert report["problems"] == [], report["problems"]
    assert report["figures"]["sent twice by accident"] == "0"
    assert "killed for good" in report["figures"]["instances"]
