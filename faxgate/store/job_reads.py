"""Jobs read back: one by id or by provider GUID, their documents and events, and the
lists and counts the daemon, the CLI and the status page ask for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from faxgate.domain.jobs import ACTIVE_STATES, Document, Event, Intake, Job, JobState
from faxgate.store.document_bytes import DocumentBytes
from faxgate.store.rows import (
    document_from_row,
    event_from_row,
    job_from_row,
    opt_time_from_db,
    placeholders,
    time_to_db,
)


class JobReads(DocumentBytes):
    """Reads of the jobs, documents, events and provider_calls tables."""

    def get_job(self, job_id: str) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    def documents(self, job_id: str) -> list[Document]:
        """The job's documents, each at a path on this host (on PostgreSQL, one another
        instance took in is first copied into this instance's spool from the database)."""
        rows = self._query("SELECT * FROM documents WHERE job_id = ? ORDER BY seq", (job_id,))
        documents = [document_from_row(row) for row in rows]
        return [replace(d, path=self._local_path(d.path, d.sha256)) for d in documents]

    def events(self, job_id: str) -> list[Event]:
        rows = self._query("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [event_from_row(row) for row in rows]

    def find_by_provider_guid(self, guid: str) -> Job | None:
        rows = self._query(
            "SELECT * FROM jobs WHERE provider_guid = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (guid,),
        )
        return job_from_row(rows[0]) if rows else None

    def call_owner(self, guid: str) -> str | None:
        """The job that a provider call (a GUID) was ever made for, now or before a retry."""
        rows = self._query("SELECT job_id FROM provider_calls WHERE guid = ?", (guid,))
        return str(rows[0]["job_id"]) if rows else None

    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        """Queued jobs whose time has come, oldest first."""
        rows = self._query(
            "SELECT * FROM jobs WHERE state = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY created_at, rowid LIMIT ?",
            (JobState.QUEUED.value, time_to_db(now), limit),
        )
        return [job_from_row(row) for row in rows]

    def next_not_before(self) -> datetime | None:
        """When the earliest queued job that waits for its time may go (None: none waits)."""
        rows = self._query(
            "SELECT MIN(not_before) AS at FROM jobs WHERE state = ? AND not_before IS NOT NULL",
            (JobState.QUEUED.value,),
        )
        return opt_time_from_db(rows[0]["at"])

    def jobs_in_states(self, states: Iterable[JobState], limit: int | None = None) -> list[Job]:
        wanted = [JobState(s).value for s in states]
        if not wanted:  # PostgreSQL refuses an empty IN ()
            return []
        limited = self._dialect.no_limit if limit is None else "LIMIT ?"
        rows = self._query(
            f"SELECT * FROM jobs WHERE state IN ({placeholders(len(wanted))})"  # noqa: S608
            f" ORDER BY created_at, rowid {limited}",
            (*wanted,) if limit is None else (*wanted, limit),
        )
        return [job_from_row(row) for row in rows]

    def group_jobs(self, group_id: str) -> list[Job]:
        rows = self._query(
            "SELECT * FROM jobs WHERE group_id = ? ORDER BY created_at, rowid", (group_id,)
        )
        return [job_from_row(row) for row in rows]

    def count_intake_jobs(self, intake: Intake, since: datetime, *, ref: str, value: str) -> int:
        """Jobs of one intake created since a moment whose intake_ref[ref] is `value` (say,
        the faxes one sender sent today)."""
        rows = self._query(
            "SELECT count(*) AS n FROM jobs WHERE intake = ? AND created_at >= ?"  # noqa: S608
            f" AND {self._dialect.json_field('intake_ref')} = ?",
            (Intake(intake).value, time_to_db(since), ref, value),
        )
        return int(rows[0]["n"])

    def count_in_states(self, states: Iterable[JobState]) -> int:
        """Jobs in these states, counted on the state index: the cost follows them, not
        every job ever kept."""
        wanted = [JobState(state).value for state in states]
        if not wanted:
            return 0
        rows = self._query(
            f"SELECT count(*) AS n FROM jobs WHERE state IN ({placeholders(len(wanted))})",  # noqa: S608
            wanted,
        )
        return int(rows[0]["n"])

    def count_by_state(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for row in self._query("SELECT state, count(*) AS n FROM jobs GROUP BY state"):
            counts[JobState(row["state"])] = row["n"]
        return counts

    def recent_jobs(self, limit: int) -> list[Job]:
        rows = self._query(
            "SELECT * FROM jobs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [job_from_row(row) for row in rows]

    def due_polls(self, now: datetime, limit: int) -> list[Job]:
        """Jobs the provider may still be working on whose next poll is due, most overdue
        first. A settled job is never returned, whatever its next_poll_at says."""
        states = [s.value for s in (*ACTIVE_STATES, JobState.UNCERTAIN)]
        rows = self._query(
            "SELECT * FROM jobs WHERE next_poll_at <= ?"  # noqa: S608
            f" AND state IN ({placeholders(len(states))})"
            " ORDER BY next_poll_at, id LIMIT ?",
            (time_to_db(now), *states, limit),
        )
        return [job_from_row(row) for row in rows]
