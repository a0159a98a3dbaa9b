"""What keeping documents in a PostgreSQL store costs: a job with a 1 MB PDF created on
SQLite (the spool's file only, the path in the store) and on PostgreSQL (the bytes in
the database too, in the job's transaction), beside the same job on PostgreSQL with a
1 KB document (the baseline: a job whose bytes cost nothing to speak of).

Run from the repository: `.venv/bin/python bench/bench_documents.py [--rounds 30]`. A
throwaway PostgreSQL cluster is started as the tests start one (Debian's postgresql), but
with fsync on, as a real server runs (SQLite runs with synchronous=FULL). Each
round writes a new document (its own bytes: nothing is deduplicated) into a spool on the
same disk for all three, then creates the job; the time is the `create_jobs` call's (the
spool's write, the same for all, is left out). Also: the database's size per document kept,
and the time for another instance, whose spool lacks the file, to read it back (written
into its spool from the database, flushed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faxgate.domain.jobs import Intake
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool
from tests.postgres import running_postgres

MB = 1024 * 1024


def pdf(size: int) -> bytes:
    # Random bytes: a PDF's streams are compressed, so they do not compress again.
    return b"%PDF-1.4\n" + os.urandom(size - 9)


def create(store: Store, spool: Spool, size: int) -> tuple[float, str]:
    file = spool.store_bytes(pdf(size), suffix=".pdf")
    job = NewJob(
        to_number="+14155550100",
        intake=Intake.CLI,
        documents=[NewDocument("a.pdf", file, "application/pdf")],
    )
    started = time.perf_counter()
    [made] = store.create_jobs([job])
    return time.perf_counter() - started, made.id


def measure(label: str, rounds: int, run: Callable[[], float]) -> list[float]:
    run()  # warm: connections, caches
    times = [run() for _ in range(rounds)]
    print(
        f"{label:<44} median {statistics.median(times) * 1000:7.2f} ms"
        f"   slowest {max(times) * 1000:7.2f} ms"
    )
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as top, running_postgres(durable=True) as server:
        root = Path(top)
        server.sql("CREATE DATABASE bench TEMPLATE template0")
        url = server.socket_url("bench")
        spool = Spool(root / "spool")
        print(f"{rounds} rounds, one job each")
        with Store.open(root / "faxgate.sqlite3") as sqlite:
            measure("SQLite, 1 MB PDF (file + path)", rounds, lambda: create(sqlite, spool, MB)[0])
        with Store.open_url(url) as pg:
            baseline = "PostgreSQL, 1 KB document (baseline)"
            measure(baseline, rounds, lambda: create(pg, spool, 1024)[0])
            ids: list[str] = []

            def one_mb() -> float:
                took, job_id = create(pg, spool, MB)
                ids.append(job_id)
                return took

            measure("PostgreSQL, 1 MB PDF (file + bytes kept)", rounds, one_mb)
            rows = pg._query(
                "SELECT count(*) AS n, pg_total_relation_size('document_bytes') AS size,"
                " sum(size) AS content FROM document_bytes"
            )
            n, size, content = rows[0]["n"], rows[0]["size"], rows[0]["content"]
            print(
                f"document_bytes: {n} documents, {size / MB:.1f} MB on disk for"
                f" {content / MB:.1f} MB of content ({size / content:.3f}x)"
            )
            other_spool = root / "other"
            with Store.open_url(url) as other:
                other.cache_documents_in(other_spool)
                for job_id in ids:
                    for document in pg.documents(job_id):
                        document.path.unlink()
                pending = iter(ids[1:])

                def read_back() -> float:
                    started = time.perf_counter()
                    other.documents(next(pending))
                    return time.perf_counter() - started

                measure("another instance reads a 1 MB PDF back", rounds - 2, read_back)


if __name__ == "__main__":
    main()
