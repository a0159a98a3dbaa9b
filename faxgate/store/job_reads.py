"""Jobs read back: one by id or by provider GUID, their documents and events, and the
lists and counts the daemon, the CLI and the status page ask for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from faxgate.domain.jobs import (
    ACTIVE_STATES,
    WAIT_KINDS,
    Document,
    Event,
    Intake,
    Job,
    JobState,
)
from faxgate.store.claims import Due, _due_jobs, due_plans
from faxgate.store.document_bytes import DocumentBytes
from faxgate.store.rows import (
    document_from_row,
    event_from_row,
    job_from_row,
    opt_time_from_db,
    placeholders,
    time_from_db,
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
        # A removed document is not written back from the database: its path as kept.
        return [
            d if d.removed_at else replace(d, path=self._local_path(d.path, d.sha256))
            for d in documents
        ]

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

    def due_jobs(self, now: datetime, limit: int, *, per_number: int | None = 1) -> list[Job]:
        """Queued jobs whose time and turn have come, as `claim_due_jobs` takes them (the
        same definition, claims._due_jobs), without a lease: for the one dispatcher of
        an SQLite store."""
        first, complete = due_plans(time_to_db(now), per_number, limit)
        rows = self._due_rows(first, limit)
        if complete is not None and len(rows) < limit:
            rows = self._due_rows(complete, limit)
        return [job_from_row(row) for row in rows]

    def _due_rows(self, due: Due, limit: int) -> list[Any]:
        where, params, order = due
        return self._query(
            f"SELECT * FROM jobs WHERE {where} ORDER BY {order} LIMIT ?",  # noqa: S608
            (*params, limit),
        )

    def sent_by(self, source: str, since: datetime) -> list[datetime]:
        """When the faxes of one source (a sender, a hot folder) were handed to the
        provider since a moment, oldest first: for limits per sender, on jobs_by_source."""
        rows = self._query(
            "SELECT submitted_at FROM jobs WHERE source = ? AND submitted_at > ?"
            " ORDER BY submitted_at",
            (source, time_to_db(since)),
        )
        return [time_from_db(row["submitted_at"]) for row in rows]

    def ahead_in_line(self, job_id: str) -> int:
        """The faxes before this queued job in its number's line: those in flight to the
        number, and those queued before it (higher priority, then older)."""
        active = [state.value for state in ACTIVE_STATES]
        rows = self._query(
            "SELECT count(*) AS n FROM jobs a, jobs j WHERE j.id = ? AND a.to_number = j.to_number"  # noqa: S608
            f" AND a.id <> j.id AND (a.state IN ({placeholders(len(active))}) OR (a.state = ?"
            " AND (a.priority > j.priority OR (a.priority = j.priority"
            " AND (a.created_at < j.created_at"
            " OR (a.created_at = j.created_at AND a.rowid < j.rowid))))))",
            (job_id, *active, JobState.QUEUED.value),
        )
        return int(rows[0]["n"])

    def count_waiting(self, now: datetime, per_number: int | None) -> dict[str, int]:
        """Queued jobs that wait, by why (WAIT_KINDS): a rule's window or limit, a call
        tried again later, or their number's turn (due, but not at their line's head)."""
        counts = dict.fromkeys(WAIT_KINDS, 0)
        at, queued = time_to_db(now), JobState.QUEUED.value
        for row in self._query(
            "SELECT coalesce(wait_kind, 'retry') AS kind, count(*) AS n FROM jobs"
            " WHERE state = ? AND not_before > ? GROUP BY coalesce(wait_kind, 'retry')",
            (queued, at),
        ):
            counts[str(row["kind"])] = int(row["n"])
        if per_number is not None:
            due = self._query(
                "SELECT count(*) AS n FROM jobs WHERE state = ?"
                " AND (not_before IS NULL OR not_before <= ?)",
                (queued, at),
            )
            where, params, _ = _due_jobs(at, per_number)
            heads = self._query(f"SELECT count(*) AS n FROM jobs WHERE {where}", params)  # noqa: S608
            counts["turn"] = int(due[0]["n"]) - int(heads[0]["n"])
        return counts

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
