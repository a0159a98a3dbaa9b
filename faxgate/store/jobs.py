"""Jobs, their documents and events: created, moved forward, read."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from faxgate.domain.jobs import (
    ACTIVE_STATES,
    FINISHED_STATES,
    Document,
    Event,
    Intake,
    Job,
    JobState,
    check_transition,
    new_job_id,
)
from faxgate.store.db import Database
from faxgate.store.dialect import Connection
from faxgate.store.outbox import insert_notification
from faxgate.store.rows import (
    as_notification,
    document_from_row,
    event_from_row,
    expected_states,
    job_from_row,
    json_to_db,
    opt_time,
    opt_time_from_db,
    placeholders,
    settable,
    time_from_db,
    time_to_db,
)
from faxgate.store.values import (
    JobNotFound,
    NewDocument,
    NewJob,
    NewNotification,
    StaleState,
)


class JobTables(Database):
    """The jobs, documents, events and provider_calls tables."""

    # -------------------------------------------------------------- creating

    def create_jobs(
        self,
        new_jobs: Sequence[NewJob],
        *,
        now: datetime | None = None,
        also: Callable[[Any], object] | None = None,
    ) -> list[Job]:
        """Create all the jobs or none; each starts queued, with a "queued" event. `also`
        writes what an intake records with them, in the same transaction (its connection
        takes sqlite3's calls and `?` placeholders on either backend)."""
        at = self._now(now)
        created_at = time_from_db(at)
        created: list[Job] = []
        with self._write() as conn:
            for new in new_jobs:
                job_id = self._insert_job(conn, new, at, created_at)
                for seq, doc in enumerate(new.documents):
                    name, spooled, content_type = (
                        (doc.name, doc.file, doc.content_type)
                        if isinstance(doc, NewDocument)
                        else doc
                    )
                    conn.execute(
                        "INSERT INTO documents (job_id, seq, name, path, size, sha256,"
                        " content_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            job_id,
                            seq,
                            name,
                            str(spooled.path),
                            spooled.size,
                            spooled.sha256,
                            content_type,
                        ),
                    )
                self._insert_event(conn, job_id, at, None, JobState.QUEUED, "queued", None)
                created.append(self._read_job(conn, job_id))
            if created:
                self._announce(conn, "jobs")
            if also is not None:
                also(conn)
        return created

    def _insert_job(self, conn: Connection, new: NewJob, at: str, now: datetime) -> str:
        """Insert the job under an id no other job has; return the id.

        On SQLite no one can take the id between the check and the insert (the write
        lock). On PostgreSQL another instance can, in a transaction not yet committed: the
        insert then waits for it, and does nothing if it committed, and another id is
        drawn.
        """
        while True:
            job_id = new_job_id(now)
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None:
                continue
            inserted = conn.execute(
                """
                INSERT INTO jobs (id, created_at, updated_at, state, intake, intake_ref,
                    to_number, from_line, cover_to, cover_from, cover_message, reply_to,
                    attempt, not_before, group_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
                """  # noqa: S608
                + self._dialect.skip_taken_id
                + " RETURNING id",
                (
                    job_id,
                    at,
                    at,
                    JobState.QUEUED.value,
                    Intake(new.intake).value,
                    json_to_db(new.intake_ref),
                    new.to_number,
                    new.from_line,
                    new.cover_to,
                    new.cover_from,
                    new.cover_message,
                    new.reply_to,
                    opt_time(new.not_before),
                    new.group_id,
                ),
            ).fetchone()
            if inserted is not None:
                return job_id

    @staticmethod
    def _insert_event(
        conn: Connection,
        job_id: str,
        at: str,
        src: JobState | None,
        dst: JobState,
        detail: str,
        data: Mapping[str, Any] | None,
    ) -> None:
        conn.execute(
            "INSERT INTO events (job_id, at, from_state, to_state, detail, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                job_id,
                at,
                None if src is None else src.value,
                dst.value,
                detail,
                json_to_db(data or {}),
            ),
        )

    # -------------------------------------------------------------- changing

    def transition(
        self,
        job_id: str,
        to: JobState,
        *,
        detail: str,
        expect: JobState | Iterable[JobState] | None = None,
        notify: Mapping[str, Any] | NewNotification | None = None,
        data: Mapping[str, Any] | None = None,
        now: datetime | None = None,
        **fields: object,
    ) -> Job:
        """Move a job to `to`, with its event (and outbox row) in the same transaction.

        `expect`: the state(s) the caller saw; StaleState when the job has moved since.
        `fields`: job columns to set with the move. `finished_at` follows the state unless
        given: set on reaching sent, failed or cancelled, cleared on leaving them.
        Raises JobNotFound, StaleState, IllegalTransition.
        """
        to = JobState(to)
        values = settable(fields)
        at = self._now(now)
        if "finished_at" not in values:
            values["finished_at"] = at if to in FINISHED_STATES else None
        expected = expected_states(expect)
        outbox = as_notification(notify, job_id)

        def move(conn: Connection) -> Job:
            src = self._locked_state(conn, job_id)
            if expected is not None and src not in expected:
                raise StaleState(job_id, expected, src)
            check_transition(src, to)
            self._update(conn, job_id, at, {"state": to.value, **values})
            self._record_call(conn, job_id, values)
            self._insert_event(conn, job_id, at, src, to, detail, data)
            if to is JobState.QUEUED:
                self._announce(conn, "jobs")
            if outbox is not None:
                insert_notification(conn, at, outbox)
                self._announce(conn, "outbox")
            return self._read_job(conn, job_id)

        return self._grouped(move)

    def update_fields(
        self,
        job_id: str,
        *,
        expect: JobState | Iterable[JobState] | None = None,
        now: datetime | None = None,
        **fields: object,
    ) -> Job:
        """Set job columns without a state change (say, the next poll)."""
        values = settable(fields)
        at = self._now(now)
        expected = expected_states(expect)

        def update(conn: Connection) -> Job:
            state = self._locked_state(conn, job_id)
            if expected is not None and state not in expected:
                raise StaleState(job_id, expected, state)
            self._update(conn, job_id, at, values)
            self._record_call(conn, job_id, values)
            return self._read_job(conn, job_id)

        return self._grouped(update)

    def _record_call(self, conn: Connection, job_id: str, values: Mapping[str, object]) -> None:
        guid = values.get("provider_guid")
        if isinstance(guid, str):
            sql = self._dialect.insert_ignoring("provider_calls", ("guid", "job_id"))
            conn.execute(sql, (guid, job_id))

    def _locked_state(self, conn: Connection, job_id: str) -> JobState:
        row = conn.execute(
            f"SELECT state FROM jobs WHERE id = ?{self._dialect.lock_row}",  # noqa: S608
            (job_id,),
        ).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return JobState(row["state"])

    @staticmethod
    def _update(conn: Connection, job_id: str, at: str, values: dict[str, object]) -> None:
        # Column names come from _SETTABLE (or "state"), never from the caller's text.
        assignments = ", ".join(f"{name} = ?" for name in ("updated_at", *values))
        conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?",  # noqa: S608
            (at, *values.values(), job_id),
        )

    # -------------------------------------------------------------- reading jobs

    def get_job(self, job_id: str) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return job_from_row(rows[0]) if rows else None

    @staticmethod
    def _read_job(conn: Connection, job_id: str) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return job_from_row(row)

    def documents(self, job_id: str) -> list[Document]:
        rows = self._query("SELECT * FROM documents WHERE job_id = ? ORDER BY seq", (job_id,))
        return [document_from_row(row) for row in rows]

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
