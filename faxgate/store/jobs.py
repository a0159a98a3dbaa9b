"""Jobs, their documents and events: created and moved forward (read in job_reads.py,
claimed in claims.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from faxgate.domain.jobs import (
    FINISHED_STATES,
    Intake,
    Job,
    JobState,
    check_transition,
    job_source,
    new_job_id,
)
from faxgate.domain.retention import REMOVABLE_STATES
from faxgate.store.dialect import Connection
from faxgate.store.document_bytes import DocumentBytes
from faxgate.store.outbox import insert_notification
from faxgate.store.rows import (
    as_notification,
    expected_states,
    job_from_row,
    json_to_db,
    opt_time,
    opt_time_from_db,
    settable,
    time_from_db,
    time_to_db,
)
from faxgate.store.spool import SpooledFile
from faxgate.store.values import (
    DocumentsRemoved,
    JobNotFound,
    NewDocument,
    NewJob,
    NewNotification,
    StaleState,
)

# How far apart one sender's queued faxes take their turns (see _turn).
TURN: Final = timedelta(seconds=1)


class JobTables(DocumentBytes):
    """The jobs, documents, events and provider_calls tables (and, on PostgreSQL, the
    documents' bytes)."""

    # -------------------------------------------------------------- creating

    def create_jobs(
        self,
        new_jobs: Sequence[NewJob],
        *,
        now: datetime | None = None,
        also: Callable[[Connection], object] | None = None,
    ) -> list[Job]:
        """Create all the jobs or none; each starts queued, with a "queued" event. `also`
        writes what an intake records with them, first in the same transaction (its
        connection takes sqlite3's calls and `?` placeholders on either backend); what it
        raises undoes all."""
        at = self._now(now)
        created_at = time_from_db(at)
        created: list[Job] = []
        documents = [[_unpacked(doc) for doc in new.documents] for new in new_jobs]
        # Read before the write lock is taken: the transaction waits for no disk.
        contents = self._read_for_keeping(
            (spooled.path, spooled.sha256) for docs in documents for _, spooled, _ in docs
        )
        with self._write() as conn:
            if also is not None:
                also(conn)
            self._keep_bytes(conn, at, contents)
            for new, docs in zip(new_jobs, documents, strict=True):
                job_id = self._insert_job(conn, new, at, created_at)
                for seq, (name, spooled, content_type) in enumerate(docs):
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
        return created

    def _insert_job(self, conn: Connection, new: NewJob, at: str, now: datetime) -> str:
        """Insert the job under an id no other job has; return the id.

        On SQLite no one can take the id between the check and the insert (the write
        lock). On PostgreSQL another instance can, in a transaction not yet committed: the
        insert then waits for it, and does nothing if it committed, and another id is
        drawn.
        """
        source = job_source(new.intake, new.intake_ref)
        turn_at = self._turn(conn, source, now)
        while True:
            job_id = new_job_id(now)
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None:
                continue
            inserted = conn.execute(
                """
                INSERT INTO jobs (id, created_at, updated_at, state, intake, intake_ref,
                    to_number, from_line, cover_to, cover_from, cover_message, reply_to,
                    attempt, not_before, group_id, priority, source, turn_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
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
                    int(new.priority),
                    source,
                    time_to_db(turn_at),
                ),
            ).fetchone()
            if inserted is not None:
                return job_id

    @staticmethod
    def _turn(conn: Connection, source: str | None, now: datetime) -> datetime:
        """When a new job of `source` takes its turn (within a priority, due jobs go in
        turn order): now, or one TURN after the source's last queued job, whichever is
        later. A sender's batch of 1,000 spreads over 1,000 turns; another sender's single
        fax queued meanwhile goes after the few turns the batch has had, not after all."""
        if source is None:
            return now
        row = conn.execute(
            "SELECT max(turn_at) AS last FROM jobs WHERE source = ? AND state = ?",
            (source, JobState.QUEUED.value),
        ).fetchone()
        last = opt_time_from_db(row["last"]) if row is not None else None
        return now if last is None else max(now, last + TURN)

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
        # Why a rule held the job back holds no longer once it moves.
        values.setdefault("wait_kind", None)
        values.setdefault("wait_reason", None)
        expected = expected_states(expect)
        outbox = as_notification(notify, job_id)

        def move(conn: Connection) -> Job:
            src = self._locked_state(conn, job_id)
            if expected is not None and src not in expected:
                raise StaleState(job_id, expected, src)
            check_transition(src, to)
            if to is JobState.QUEUED and src in REMOVABLE_STATES:
                self._refuse_removed(conn, job_id)
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

    def release_waits(self, *, now: datetime | None = None) -> int:
        """Let every job a sending rule holds back be judged again (new rules after a
        reload): their not_before and why are cleared. A busy line's wait is kept.
        Returns how many."""
        at = self._now(now)
        with self._write() as conn:
            released = int(
                conn.execute(
                    "UPDATE jobs SET not_before = NULL, wait_kind = NULL, wait_reason = NULL,"
                    " updated_at = ? WHERE state = ? AND wait_kind IS NOT NULL",
                    (at, JobState.QUEUED.value),
                ).rowcount
            )
            if released:
                self._announce(conn, "jobs")
            return released

    def _record_call(self, conn: Connection, job_id: str, values: Mapping[str, object]) -> None:
        guid = values.get("provider_guid")
        if isinstance(guid, str):
            sql = self._dialect.insert_ignoring("provider_calls", ("guid", "job_id"))
            conn.execute(sql, (guid, job_id))

    @staticmethod
    def _refuse_removed(conn: Connection, job_id: str) -> None:
        """DocumentsRemoved when retention removed the job's documents: a job sent again
        needs them. Read under the job's lock, which a retention pass takes too."""
        row = conn.execute(
            "SELECT min(removed_at) AS removed_at FROM documents WHERE job_id = ?", (job_id,)
        ).fetchone()
        if row is not None and row["removed_at"] is not None:
            raise DocumentsRemoved(job_id, time_from_db(row["removed_at"]))

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

    @staticmethod
    def _read_job(conn: Connection, job_id: str) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return job_from_row(row)


def _unpacked(doc: NewDocument | tuple[str, SpooledFile, str]) -> tuple[str, SpooledFile, str]:
    return (doc.name, doc.file, doc.content_type) if isinstance(doc, NewDocument) else doc
