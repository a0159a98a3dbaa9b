"""One instance of a store shared by several: claims due jobs and "sends" them, as the
dispatcher would, until none is left. The claims test runs two and kills one.

Usage: python claimer.py LOCATION OWNER LEASE_SECONDS LOG [hang]

LOCATION is an SQLite file or a postgresql:// URL. Each step goes to LOG as a line:
"claimed <id> <its lease's end>", "sent <id> <when>" (unix times). With `hang`, the
instance claims one batch and then stalls (as in a slow request) until it is killed.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from faxgate.clock import utc_now
from faxgate.domain.jobs import JobState
from faxgate.store import Store

BATCH = 5
POLL = 0.02  # seconds between looks when every due job is leased to someone else


def run(store: Store, owner: str, lease: timedelta, log: TextIO, hang: bool) -> None:
    def note(what: str, job_id: str, at: float) -> None:
        log.write(f"{what} {job_id} {at:.6f}\n")
        log.flush()

    while True:
        now = utc_now()
        claimed = store.claim_due_jobs(now, BATCH, owner=owner, lease=lease)
        for job in claimed:
            note("claimed", job.id, (now + lease).timestamp())
        if hang and claimed:
            threading.Event().wait()  # the slow IO this instance never comes back from
        for job in claimed:
            store.transition(job.id, JobState.SUBMITTING, detail="sending", expect=JobState.QUEUED)
            note("sent", job.id, time.time())
            store.transition(job.id, JobState.SUBMITTED, detail="accepted", provider_guid=job.id)
        if not claimed:
            if store.count_in_states([JobState.QUEUED]) == 0:
                return
            time.sleep(POLL)


def main() -> None:
    location, owner, lease_seconds, log_path = sys.argv[1:5]
    hang = sys.argv[5:] == ["hang"]
    lease = timedelta(seconds=float(lease_seconds))
    opened = (
        Store.open_url(location)
        if location.startswith("postgresql://")
        else Store.open(Path(location))
    )
    with opened as store, open(log_path, "a", encoding="utf-8") as log:
        run(store, owner, lease, log, hang)


if __name__ == "__main__":
    main()
