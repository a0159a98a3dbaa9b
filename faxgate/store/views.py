"""Read-only queries for the status page: jobs found by state, number and sender, a page
at a time, and the faxes out and in per hour.

Plain SQL on purpose (substr, lower, LIKE with an ESCAPE, no JSON functions): times are
fixed-width ISO-8601 UTC text, so an hour is the first 13 characters of one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from faxgate.domain.jobs import Job, JobState
from faxgate.store.db import Database
from faxgate.store.rows import job_from_row, placeholders, time_to_db

# What the chart counts as sent: what the owner was told was sent.
SENT_STATES: Final = (JobState.SENT, JobState.PRESUMED_SENT)
_BATCH: Final = 200  # rows read at a time when the sender is checked row by row


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the job list is narrowed to; empty values narrow nothing."""

    state: JobState | None = None
    number: str = ""  # digits anywhere in the number
    sender: str = ""  # part of the mail sender's address or the hot folder's path

    @property
    def digits(self) -> str:
        return "".join(c for c in self.number if c.isdigit())


@dataclass(frozen=True, slots=True)
class HourCounts:
    """Per hour ("2024-05-01T10", UTC): faxes that ended sent, ended failed, came in."""

    sent: Mapping[str, int] = field(default_factory=dict)
    failed: Mapping[str, int] = field(default_factory=dict)
    received: Mapping[str, int] = field(default_factory=dict)


def job_senders(job: Job) -> list[str]:
    """Who or what handed the job in, as the sender filter matches it: the mail sender
    (and the login it gave), or the hot folder and the file dropped in it."""
    found = []
    for key in ("sender", "login", "folder", "drop"):
        value = job.intake_ref.get(key)
        if isinstance(value, str) and value:
            found.append(value)
    return found


def _like_pattern(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class StatusViews(Database):
    """Queries the status page reads and nothing writes."""

    def find_jobs(self, wanted: JobFilter, *, offset: int, limit: int) -> tuple[list[Job], bool]:
        """The matching jobs newest first, `limit` of them after skipping `offset`, and
        whether more follow."""
        where: list[str] = []
        params: list[object] = []
        if wanted.state is not None:
            where.append("state = ?")
            params.append(wanted.state.value)
        if wanted.digits:
            where.append("to_number LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(wanted.digits))
        sender = wanted.sender.strip().lower()
        if sender and sender.isascii() and json.dumps(sender)[1:-1] == sender:
            # Narrowed in SQL on the JSON text (where the term reads as itself), then
            # checked exactly on each row below.
            where.append("lower(intake_ref) LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(sender))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT * FROM jobs{clause} ORDER BY created_at DESC, id DESC"  # noqa: S608
        if not sender:
            rows = self._query(f"{sql} LIMIT ? OFFSET ?", (*params, limit + 1, offset))
            jobs = [job_from_row(row) for row in rows]
            return jobs[:limit], len(jobs) > limit
        found: list[Job] = []
        scanned = 0
        while len(found) <= offset + limit:
            rows = self._query(f"{sql} LIMIT ? OFFSET ?", (*params, _BATCH, scanned))
            scanned += len(rows)
            found.extend(
                job
                for job in (job_from_row(row) for row in rows)
                if any(sender in who.lower() for who in job_senders(job))
            )
            if len(rows) < _BATCH:
                break
        return found[offset : offset + limit], len(found) > offset + limit

    def hour_counts(self, since: datetime) -> HourCounts:
        """Faxes sent, failed and received per hour from `since` on."""
        start = time_to_db(since)
        ended = (*SENT_STATES, JobState.FAILED)
        rows = self._query(
            "SELECT substr(finished_at, 1, 13) AS hour, state, count(*) AS n FROM jobs"  # noqa: S608
            f" WHERE state IN ({placeholders(len(ended))}) AND finished_at >= ?"
            " GROUP BY substr(finished_at, 1, 13), state",
            (*(state.value for state in ended), start),
        )
        sent: dict[str, int] = {}
        failed: dict[str, int] = {}
        for row in rows:
            counts = failed if row["state"] == JobState.FAILED.value else sent
            counts[row["hour"]] = counts.get(row["hour"], 0) + int(row["n"])
        received = {
            row["hour"]: int(row["n"])
            for row in self._query(
                "SELECT substr(received_at, 1, 13) AS hour, count(*) AS n FROM inbound_faxes"
                " WHERE received_at >= ? GROUP BY substr(received_at, 1, 13)",
                (start,),
            )
        }
        return HourCounts(sent, failed, received)
