"""Read-only queries for the status page: jobs found by state, number and sender, a page
at a time, inbound faxes by number, and the faxes out and in per hour.

Plain SQL on purpose (substr, lower, LIKE with an ESCAPE, no JSON functions): times are
fixed-width ISO-8601 UTC text, so an hour is the first 13 characters of one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from faxgate.domain.inbound import InboundFax
from faxgate.domain.jobs import Job, JobState
from faxgate.store.db import Database
from faxgate.store.rows import (
    inbound_fax_from_row,
    job_from_row,
    json_from_db,
    placeholders,
    time_to_db,
)

# What the chart counts as sent: what the owner was told was sent.
SENT_STATES: Final = (JobState.SENT, JobState.PRESUMED_SENT)


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


def senders(intake_ref: Mapping[str, Any]) -> list[str]:
    """Who or what handed a job in, as the sender filter matches it: the mail sender
    (and the login it gave), or the hot folder and the file dropped in it."""
    found = []
    for key in ("sender", "login", "folder", "drop"):
        value = intake_ref.get(key)
        if isinstance(value, str) and value:
            found.append(value)
    return found


def _sql_fragment(term: str) -> str:
    """The longest part of the term that reads the same in the JSON text and folds the
    same in every database's lower(): ASCII letters, digits and plain punctuation."""
    runs = re.findall(r"[A-Za-z0-9@._+ -]+", term)
    return max(runs, key=len) if runs else ""


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
        if wanted.digits:
            where.append("to_number LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(wanted.digits))
        sender = wanted.sender.strip().lower()
        fragment = _sql_fragment(sender)
        if fragment:
            # Narrowed in SQL on the JSON text, then checked exactly on each row below.
            where.append("lower(intake_ref) LIKE ? ESCAPE '\\'")
            params.append(_like_pattern(fragment))
        order = " ORDER BY created_at DESC, id DESC"
        if not sender:
            return self._newest(wanted.state, where, params, offset, limit)
        if wanted.state is not None:
            where.append("state = ?")
            params.append(wanted.state.value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # The sender is checked here on the candidates' intake_ref alone (one read, one
        # sort), then the page's jobs are read whole.
        candidates = self._query(
            f"SELECT id, intake_ref FROM jobs{clause}{order}",  # noqa: S608
            params,
        )
        matching = [
            row["id"]
            for row in candidates
            if any(sender in who.lower() for who in senders(json_from_db(row["intake_ref"])))
        ]
        page = matching[offset : offset + limit]
        if not page:
            return [], False
        rows = self._query(
            f"SELECT * FROM jobs WHERE id IN ({placeholders(len(page))})",  # noqa: S608
            page,
        )
        by_id = {row["id"]: job_from_row(row) for row in rows}
        return [by_id[job_id] for job_id in page if job_id in by_id], len(matching) > (
            offset + limit
        )

    def _newest(
        self,
        state: JobState | None,
        where: list[str],
        params: list[object],
        offset: int,
        limit: int,
    ) -> tuple[list[Job], bool]:
        """Newest first, read state by state along the (state, created_at) index and
        merged: the whole table is never sorted for a page."""
        wanted = offset + limit + 1
        clause = "".join(f" AND {condition}" for condition in where)
        rows = []
        for each in [state] if state is not None else list(JobState):
            rows.extend(
                self._query(
                    f"SELECT * FROM jobs WHERE state = ?{clause}"  # noqa: S608
                    " ORDER BY created_at DESC, id DESC LIMIT ?",
                    (each.value, *params, wanted),
                )
            )
        # A job that changed state between two reads shows once, as last read.
        unique = list({row["id"]: row for row in rows}.values())
        unique.sort(key=lambda row: (row["created_at"], row["id"]), reverse=True)
        jobs = [job_from_row(row) for row in unique[offset:wanted]]
        return jobs[:limit], len(jobs) > limit

    def find_inbound(self, digits: str, limit: int) -> list[InboundFax]:
        """The newest inbound faxes from or to a number with these digits in it."""
        pattern = _like_pattern(digits)
        rows = self._query(
            "SELECT * FROM inbound_faxes WHERE from_number LIKE ? ESCAPE '\\'"
            " OR to_number LIKE ? ESCAPE '\\' ORDER BY received_at DESC, id DESC LIMIT ?",
            (pattern, pattern, limit),
        )
        return [inbound_fax_from_row(row) for row in rows]

    def hour_counts(self, since: datetime) -> HourCounts:
        """Faxes sent, failed and received per hour from `since` on."""
        start = time_to_db(since)
        ended = (*SENT_STATES, JobState.FAILED)
        finished, received_hour = (
            self._dialect.hour("finished_at"),
            self._dialect.hour("received_at"),
        )
        rows = self._query(
            f"SELECT {finished} AS hour, state, count(*) AS n FROM jobs"  # noqa: S608
            f" WHERE state IN ({placeholders(len(ended))}) AND finished_at >= ?"
            f" GROUP BY {finished}, state",
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
                f"SELECT {received_hour} AS hour, count(*) AS n FROM inbound_faxes"  # noqa: S608
                f" WHERE received_at >= ? GROUP BY {received_hour}",
                (start,),
            )
        }
        return HourCounts(sent, failed, received)
