"""Writes jobs and moves them along, forever, until killed: the store's crash test runs it.

Usage: python store_writer.py DB SPOOL LOG

DB is an SQLite file or a postgresql:// URL.

Each group is two jobs created at once, each with two spooled documents (one shared by the
group); each job then goes queued -> submitting -> submitted -> sent, or fails, or ends
uncertain. After every commit a line goes to LOG: "<job id> <state>", so the test knows
what was committed before the kill.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import TextIO

from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool

DOCUMENT_COUNT = 2


def document_bytes(group: int, job: int) -> bytes:
    return f"group {group} job {job}\n".encode() * (1 + group % 7)


def run(store: Store, spool: Spool, log: TextIO) -> None:
    def committed(job_id: str, state: JobState) -> None:
        log.write(f"{job_id} {state.value}\n")
        log.flush()

    for group in itertools.count():
        shared = spool.store_bytes(document_bytes(group, -1), suffix=".pdf")
        new_jobs = [
            NewJob(
                to_number=f"+1415555{group % 10000:04d}",
                intake=Intake.SMTP,
                intake_ref={"group": group, "job": k},
                group_id=f"g{group}",
                reply_to="sender@example.org",
                documents=[
                    NewDocument("shared.pdf", shared, "application/pdf"),
                    NewDocument(
                        f"own-{k}.pdf",
                        spool.store_bytes(document_bytes(group, k), suffix=".pdf"),
                        "application/pdf",
                    ),
                ],
            )
            for k in range(2)
        ]
        jobs = store.create_jobs(new_jobs)
        for job in jobs:
            committed(job.id, JobState.QUEUED)
        for k, job in enumerate(jobs):
            store.transition(job.id, JobState.SUBMITTING, detail="sending", expect=JobState.QUEUED)
            committed(job.id, JobState.SUBMITTING)
            if (group + k) % 5 == 4:
                store.transition(
                    job.id,
                    JobState.UNCERTAIN,
                    detail="no answer from the provider",
                    expect=JobState.SUBMITTING,
                    notify={"job": job.id, "outcome": "uncertain"},
                )
                committed(job.id, JobState.UNCERTAIN)
                continue
            store.transition(
                job.id,
                JobState.SUBMITTED,
                detail="the provider has it",
                expect=JobState.SUBMITTING,
                provider_guid=f"{group:020d}{k:020d}",
                submitted_at=job.created_at,
            )
            committed(job.id, JobState.SUBMITTED)
            outcome = JobState.FAILED if (group + k) % 3 == 2 else JobState.SENT
            store.transition(
                job.id,
                outcome,
                detail=f"the fax was {outcome.value}",
                expect=JobState.SUBMITTED,
                notify={"job": job.id, "outcome": outcome.value},
                pages=1 + group % 3,
            )
            committed(job.id, outcome)


def main() -> None:
    db, spool_dir, log_path = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    opened = Store.open_url(db) if db.startswith("postgresql://") else Store.open(Path(db))
    with opened as store, log_path.open("a", encoding="utf-8") as log:
        run(store, Spool(spool_dir), log)


if __name__ == "__main__":
    main()
