"""How long the status pages take to answer over HTTP on a store with a long history.

Run from the repository: `.venv/bin/python bench/bench_statuspage.py [--jobs 100000]
[--rounds 9]`.

The store is filled straight in SQL (jobs only, no documents): one job every 30 seconds
back from now, 8 in 10 sent, 1 failed, 1 queued, from 500 senders, so the last 24 hours
hold some 2,900 of them for the chart. The pages are served as the daemon serves them
(aiohttp on loopback, the store read in a thread) and fetched one at a time with httpx.
Wall time per request: median and slowest of the rounds, after one unmeasured request.
The figures go to bench/README.md (section "Status pages").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
from _common import banner, table
from aiohttp import web

from faxgate.clock import utc_now
from faxgate.domain.jobs import new_job_id
from faxgate.store import Store
from faxgate.store.rows import time_to_db
from faxgate.web.server import start_http
from faxgate.web.statuspage import StatusPage
from faxgate.web.statusroutes import add_status_routes

STATES = ("sent",) * 8 + ("failed", "queued")


def fill(path: Path, jobs: int) -> str:
    """The store with `jobs` jobs; returns one sent job's id."""
    Store.open(path).close()  # the schema
    now = utc_now()
    rows = []
    for i in range(jobs):
        created = now - timedelta(seconds=(jobs - i) * 30)
        state = STATES[i % len(STATES)]
        finished = time_to_db(created + timedelta(minutes=2)) if state != "queued" else None
        ref = json.dumps({"sender": f"user{i % 500}@example.com", "subject": "letter"})
        rows.append(
            (
                new_job_id(created),
                time_to_db(created),
                time_to_db(created),
                state,
                "smtp",
                ref,
                f"+1415555{i % 10000:04d}",
                finished,
            )
        )
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT OR IGNORE INTO jobs (id, created_at, updated_at, state, intake, intake_ref,"
            " to_number, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return str(rows[-10][0])


async def measure(store: Store, job_id: str, rounds: int) -> list[list[object]]:
    app = web.Application()
    add_status_routes(app, StatusPage(store, recent_inbound=store.recent_inbound))
    http = await start_http(app, "127.0.0.1", 0)
    paths = {
        "/ (the list, chart, counts)": "/",
        "/?state=failed": "/?state=failed",
        "/?number=555 0123": "/?number=555+0123",
        "/?sender=user7@": "/?sender=user7%40",
        "/?sender=nobody": "/?sender=nobody",
        "/?sender=ёж (no SQL narrowing)": "/?sender=%D1%91%D0%B6",
        "/?page=100": "/?page=100",
        "/jobs/ID": f"/jobs/{job_id}",
    }
    results: list[list[object]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http.port}") as client:
            for label, path in paths.items():
                (await client.get(path)).raise_for_status()
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    (await client.get(path)).raise_for_status()
                    times.append((time.perf_counter() - start) * 1000)
                results.append(
                    [label, f"{statistics.median(times):.0f} ms", f"{max(times):.0f} ms"]
                )
    finally:
        await http.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    banner(f"status pages over HTTP, {args.jobs} jobs")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faxgate.sqlite3"
        job_id = fill(path, args.jobs)
        with Store.open(path) as store:
            rows = asyncio.run(measure(store, job_id, args.rounds))
    print(table(["request", "median", "slowest"], rows))


if __name__ == "__main__":
    main()
