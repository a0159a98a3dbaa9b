"""The soak run (bench/bench_soak.py) in its quick form, as the tests run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def quick_soak(tmp_path: Path, *options: str) -> dict[str, Any]:
    """Run `bench.bench_soak --quick` with `options`; it must exit 0. Its JSON report."""
    figures = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.bench_soak", *options, "--quick", "--json", str(figures)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report: dict[str, Any] = json.loads(figures.read_text())
    return report
