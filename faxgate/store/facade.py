"""The job store: jobs, their documents, every state change and the outbox, in SQLite.

The daemon and the CLI open the same file at once, so: WAL (readers never block the
writer), a busy timeout (writers wait for each other instead of failing), and every
write in one `BEGIN IMMEDIATE` transaction (take the write lock before reading what the
write depends on). synchronous=FULL: a commit that returned survives a power cut.

Times are stored as fixed-width ISO-8601 UTC text ("2024-05-01T10:15:00.000000Z"), so
they read well in the sqlite3 shell and compare correctly as text; the API takes and
returns aware datetimes. Blocking API: the daemon calls it from worker threads. Writes
share one connection under a lock; reads have a connection of their own, so they never
wait behind a commit's fsync. State changes are committed in groups: the changes asked
for while a commit runs share the next one (one fsync for many), and each caller returns
only once its own change is durable.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from faxgate.clock import utc_now
from faxgate.domain.inbound import (
    NOTIFICATION_KIND,
    InboundDelivery,
    InboundFax,
    NewDelivery,
    NewInboundFax,
    ReceivedDocument,
)
from faxgate.domain.jobs import (
    ACTIVE_STATES,
    FINISHED_STATES,
    Document,
    Event,
    Intake,
    Job,
    JobState,
    Notification,
    check_transition,
    new_job_id,
)
from faxgate.store.spool import SpooledFile

DEFAULT_BUSY_TIMEOUT: Final = 5.0  # seconds

# Each entry moves the schema one version forward (PRAGMA user_version = its position,
# from 1). Never edit an entry that has shipped: append a new one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE jobs (
            id              TEXT PRIMARY KEY,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL,
            state           TEXT NOT NULL,
            intake          TEXT NOT NULL,
            intake_ref      TEXT NOT NULL DEFAULT '{}',
            to_number       TEXT NOT NULL,
            from_line       TEXT,
            cover_to        TEXT,
            cover_from      TEXT,
            cover_message   TEXT,
            reply_to        TEXT,
            attempt         INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
            not_before      TEXT,
            provider_guid   TEXT,
            provider_status TEXT,
            provider_error  TEXT,
            pages           INTEGER,
            reason          TEXT,
            next_poll_at    TEXT,
            poll_interval   REAL,
            submitted_at    TEXT,
            finished_at     TEXT,
            group_id        TEXT
        )
        """,
        "CREATE INDEX jobs_by_state ON jobs (state, not_before)",
        "CREATE INDEX jobs_by_provider_guid ON jobs (provider_guid)",
        "CREATE INDEX jobs_by_next_poll ON jobs (next_poll_at)",
        "CREATE INDEX jobs_by_group ON jobs (group_id)",
        """
        CREATE TABLE documents (
            job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            seq          INTEGER NOT NULL,
            name         TEXT NOT NULL,
            path         TEXT NOT NULL,
            size         INTEGER NOT NULL,
            sha256       TEXT NOT NULL,
            content_type TEXT NOT NULL,
            PRIMARY KEY (job_id, seq)
        )
        """,
        "CREATE INDEX documents_by_path ON documents (path)",
        """
        CREATE TABLE events (
            id         INTEGER PRIMARY KEY,
            job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            at         TEXT NOT NULL,
            from_state TEXT,
            to_state   TEXT NOT NULL,
            detail     TEXT NOT NULL,
            data       TEXT NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX events_by_job ON events (job_id, id)",
        """
        CREATE TABLE outbox (
            id              INTEGER PRIMARY KEY,
            job_id          TEXT REFERENCES jobs (id) ON DELETE SET NULL,
            created_at      TEXT NOT NULL,
            kind            TEXT NOT NULL,
            payload         TEXT NOT NULL DEFAULT '{}',
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            delivered_at    TEXT,
            last_error      TEXT
        )
        """,
        """
        CREATE INDEX outbox_pending ON outbox (next_attempt_at)
            WHERE delivered_at IS NULL
        """,
    ),
    # Inbound faxes (faxgate/inbound/): each fax once by the provider's GUID, and the
    # deliveries it owes, each with its outbox row.
    (
        """
        CREATE TABLE inbound_faxes (
            id               TEXT PRIMARY KEY,
            received_at      TEXT NOT NULL,
            provider_guid    TEXT NOT NULL UNIQUE,
            to_number        TEXT NOT NULL,
            from_number      TEXT,
            pages            INTEGER,
            arrived_at       TEXT,
            route            TEXT NOT NULL,
            document_path    TEXT,
            document_size    INTEGER,
            document_sha256  TEXT,
            content_type     TEXT,
            note             TEXT,
            transaction_json TEXT NOT NULL DEFAULT '{}'
        )
        """,
        "CREATE INDEX inbound_faxes_by_received ON inbound_faxes (received_at)",
        """
        CREATE TABLE inbound_deliveries (
            fax_id       TEXT NOT NULL REFERENCES inbound_faxes (id) ON DELETE CASCADE,
            seq          INTEGER NOT NULL,
            kind         TEXT NOT NULL,
            target       TEXT NOT NULL,
            outbox_id    INTEGER REFERENCES outbox (id) ON DELETE SET NULL,
            delivered_at TEXT,
            detail       TEXT,
            PRIMARY KEY (fax_id, seq)
        )
        """,
    ),
    (
        # The dispatcher takes the oldest due jobs and the SMTP intake counts a sender's
        # faxes of the day: both walk an index instead of the whole history.
        "CREATE INDEX jobs_by_state_age ON jobs (state, created_at)",
        "CREATE INDEX jobs_by_intake_age ON jobs (intake, created_at)",
    ),
    (
        # Every call the provider took, by its GUID, kept when the job moves on (a busy
        # line called again gets a new GUID): reconciling never takes another job's old
        # call for its own.
        """
        CREATE TABLE provider_calls (
            guid   TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
        ) WITHOUT ROWID
        """,
        """
        INSERT OR IGNORE INTO provider_calls (guid, job_id)
        SELECT json_extract(data, '$.guid'), job_id FROM events
        WHERE json_valid(data) AND json_type(data, '$.guid') = 'text'
        """,
        """
        INSERT OR IGNORE INTO provider_calls (guid, job_id)
        SELECT provider_guid, id FROM jobs WHERE provider_guid IS NOT NULL
        """,
    ),
    (
        # Callbacks for GUIDs no job holds (yet): the provider removes a fax once it is
        # sent, so such a callback may be the only record of a fax whose send's answer
        # was lost. Kept a while (bounded by age and count) as evidence for reconciling.
        """
        CREATE TABLE unmatched_reports (
            guid        TEXT NOT NULL,
            status      TEXT NOT NULL,
            received_at TEXT NOT NULL,
            body        TEXT NOT NULL,
            PRIMARY KEY (guid, status)
        )
        """,
        "CREATE INDEX unmatched_reports_by_age ON unmatched_reports (received_at)",
    ),
)


@dataclass(frozen=True, slots=True)
class UnmatchedReport:
    """A callback for a GUID no job held when it came (the provider's object in `body`)."""

    guid: str
    status: str
    received_at: datetime
    body: Mapping[str, Any]


class StoreError(Exception):
    pass


class SchemaTooNew(StoreError):
    """The file was written by a newer faxgate: refuse rather than guess."""


class JobNotFound(StoreError, LookupError):
    pass


class StaleState(StoreError):
    """The job is no longer in the state the caller saw: someone else moved it."""

    def __init__(self, job_id: str, expected: Collection[JobState], actual: JobState) -> None:
        wanted = " or ".join(sorted(s.value for s in expected))
        super().__init__(f"job {job_id} is {actual.value}, not {wanted}")
        self.job_id = job_id
        self.expected = frozenset(expected)
        self.actual = actual


# ------------------------------------------------------------------ what callers hand in


@dataclass(frozen=True, slots=True)
class NewDocument:
    name: str  # display name
    file: SpooledFile
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewJob:
    """A job as intake hands it over; the store gives it an id and starts it queued."""

    to_number: str
    intake: Intake
    documents: Sequence[NewDocument | tuple[str, SpooledFile, str]] = ()
    intake_ref: Mapping[str, Any] = field(default_factory=dict)
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    reply_to: str | None = None
    group_id: str | None = None
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewNotification:
    kind: str = "report"
    payload: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None  # set by `transition` to the job it belongs to
    next_attempt_at: datetime | None = None  # None: at once


# ------------------------------------------------------------------ conversions


def _time_to_db(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time_from_db(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _opt_time_from_db(text: str | None) -> datetime | None:
    return None if text is None else _time_from_db(text)


def _json_to_db(value: Mapping[str, Any]) -> str:
    text = json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        text.encode()
    except UnicodeEncodeError:
        # A file name that is not UTF-8 (its bytes kept as surrogates), which SQLite cannot
        # store as text: escaped, it reads back as the same name.
        return json.dumps(dict(value), ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return text


def _json_from_db(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def _opt_time(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return _time_to_db(value)


def _opt_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def _opt_int(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise TypeError(f"expected a positive integer, got {value!r}")


def _opt_interval(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"expected a timedelta, got {type(value).__name__}")
    return value.total_seconds()


# The job columns a caller may set; the others belong to the store or never change.
_SETTABLE: Final[Mapping[str, Callable[[object], object]]] = {
    "attempt": _count,
    "not_before": _opt_time,
    "provider_guid": _opt_text,
    "provider_status": _opt_text,
    "provider_error": _opt_text,
    "pages": _opt_int,
    "reason": _opt_text,
    "next_poll_at": _opt_time,
    "poll_interval": _opt_interval,
    "submitted_at": _opt_time,
    "finished_at": _opt_time,
    "reply_to": _opt_text,
}


def _settable(fields: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(fields) - set(_SETTABLE))
    if unknown:
        raise ValueError(f"not a job field that can be set: {', '.join(unknown)}")
    return {name: _SETTABLE[name](value) for name, value in fields.items()}


def _job_from_row(row: sqlite3.Row) -> Job:
    interval = row["poll_interval"]
    return Job(
        id=row["id"],
        created_at=_time_from_db(row["created_at"]),
        updated_at=_time_from_db(row["updated_at"]),
        state=JobState(row["state"]),
        intake=Intake(row["intake"]),
        intake_ref=_json_from_db(row["intake_ref"]),
        to_number=row["to_number"],
        from_line=row["from_line"],
        cover_to=row["cover_to"],
        cover_from=row["cover_from"],
        cover_message=row["cover_message"],
        reply_to=row["reply_to"],
        attempt=row["attempt"],
        not_before=_opt_time_from_db(row["not_before"]),
        provider_guid=row["provider_guid"],
        provider_status=row["provider_status"],
        provider_error=row["provider_error"],
        pages=row["pages"],
        reason=row["reason"],
        next_poll_at=_opt_time_from_db(row["next_poll_at"]),
        poll_interval=None if interval is None else timedelta(seconds=interval),
        submitted_at=_opt_time_from_db(row["submitted_at"]),
        finished_at=_opt_time_from_db(row["finished_at"]),
        group_id=row["group_id"],
    )


def _document_from_row(row: sqlite3.Row) -> Document:
    return Document(
        job_id=row["job_id"],
        seq=row["seq"],
        name=row["name"],
        path=Path(row["path"]),
        size=row["size"],
        sha256=row["sha256"],
        content_type=row["content_type"],
    )


def _event_from_row(row: sqlite3.Row) -> Event:
    return Event(
        id=row["id"],
        job_id=row["job_id"],
        at=_time_from_db(row["at"]),
        from_state=None if row["from_state"] is None else JobState(row["from_state"]),
        to_state=JobState(row["to_state"]),
        detail=row["detail"],
        data=_json_from_db(row["data"]),
    )


def _notification_from_row(row: sqlite3.Row) -> Notification:
    return Notification(
        id=row["id"],
        job_id=row["job_id"],
        created_at=_time_from_db(row["created_at"]),
        kind=row["kind"],
        payload=_json_from_db(row["payload"]),
        attempts=row["attempts"],
        next_attempt_at=_opt_time_from_db(row["next_attempt_at"]),
        delivered_at=_opt_time_from_db(row["delivered_at"]),
        last_error=row["last_error"],
    )


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


# ------------------------------------------------------------------ migrations


def schema_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS
) -> int:
    """Bring the schema up to date, each step in its own transaction; return the version.

    The connection must be in autocommit mode (isolation_level=None). Safe when two
    processes start at once: the version is read again under the write lock.
    """
    if schema_version(conn) > len(migrations):
        raise SchemaTooNew(
            f"the store has schema version {schema_version(conn)}; "
            f"this faxgate knows up to {len(migrations)}"
        )
    for version, statements in enumerate(migrations, start=1):
        if schema_version(conn) >= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(conn) < version:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return schema_version(conn)


# ------------------------------------------------------------------ the store


_T = TypeVar("_T")


@dataclass(slots=True)
class _Change:
    """One caller's state change waiting for a group commit."""

    body: Callable[[sqlite3.Connection], Any]
    done: bool = False
    value: Any = None
    error: BaseException | None = None


class Store:
    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        clock: Callable[[], datetime],
        reader: sqlite3.Connection | None = None,
    ):
        self._conn = conn
        self._lock = threading.RLock()
        self._reader = reader or conn
        self._read_lock = threading.Lock() if reader is not None else self._lock
        self._waiting: list[_Change] = []
        self._waiting_lock = threading.Lock()
        self._clock = clock
        self.path = path

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], datetime] = utc_now,
    ) -> Store:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun explicitly, never behind our back.
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch {path} to WAL (journal mode is {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            apply_migrations(conn)
            reader = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except BaseException:
            conn.close()
            raise
        reader.row_factory = sqlite3.Row
        reader.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000):d}")
        return cls(conn, path, clock, reader)

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._conn.close()
            self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def pragmas(self) -> dict[str, object]:
        """The settings this connection runs with, for `faxgate status` and tests."""
        names = ("journal_mode", "synchronous", "busy_timeout", "foreign_keys", "user_version")
        with self._lock:
            return {name: self._conn.execute(f"PRAGMA {name}").fetchone()[0] for name in names}

    def integrity_check(self) -> list[str]:
        """SQLite's own check of the file: ["ok"] when sound."""
        return [row[0] for row in self._query("PRAGMA integrity_check")]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _grouped(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `body` in a transaction shared with the changes queued meanwhile.

        Whoever holds the write lock commits every change waiting at that moment, each in
        a savepoint of its own: a body that raises undoes only itself. One that finds its
        change committed by an earlier holder just returns its result.
        """
        change = _Change(body)
        with self._waiting_lock:
            self._waiting.append(change)
        with self._lock:
            if not change.done:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._commit_group(batch)
        if change.error is not None:
            raise change.error
        return change.value  # type: ignore[no-any-return]

    def _commit_group(self, batch: list[_Change]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for change in batch:
                conn.execute("SAVEPOINT change")
                try:
                    change.value = change.body(conn)
                except Exception as error:
                    conn.execute("ROLLBACK TO change")
                    change.error = error
                conn.execute("RELEASE change")
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for change in batch:  # nothing of the group was committed
                change.value, change.error = None, error
        finally:
            for change in batch:
                change.done = True

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def _now(self, now: datetime | None) -> str:
        return _time_to_db(self._clock() if now is None else now)

    # -------------------------------------------------------------- creating

    def create_jobs(self, new_jobs: Sequence[NewJob], *, now: datetime | None = None) -> list[Job]:
        """Create all the jobs or none; each starts queued, with a "queued" event."""
        at = self._now(now)
        created_at = _time_from_db(at)
        created: list[Job] = []
        with self._write() as conn:
            for new in new_jobs:
                job_id = self._unused_job_id(conn, created_at)
                conn.execute(
                    """
                    INSERT INTO jobs (id, created_at, updated_at, state, intake, intake_ref,
                        to_number, from_line, cover_to, cover_from, cover_message, reply_to,
                        attempt, not_before, group_id)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)
                    """,
                    (
                        job_id,
                        at,
                        at,
                        JobState.QUEUED.value,
                        Intake(new.intake).value,
                        _json_to_db(new.intake_ref),
                        new.to_number,
                        new.from_line,
                        new.cover_to,
                        new.cover_from,
                        new.cover_message,
                        new.reply_to,
                        _opt_time(new.not_before),
                        new.group_id,
                    ),
                )
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
        return created

    @staticmethod
    def _unused_job_id(conn: sqlite3.Connection, now: datetime) -> str:
        # Under the write lock, so no one can take the id between the check and the insert.
        while True:
            job_id = new_job_id(now)
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return job_id

    @staticmethod
    def _insert_event(
        conn: sqlite3.Connection,
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
                _json_to_db(data or {}),
            ),
        )

    @staticmethod
    def _insert_notification(
        conn: sqlite3.Connection, at: str, notification: NewNotification
    ) -> int:
        cursor = conn.execute(
            "INSERT INTO outbox (job_id, created_at, kind, payload, attempts, next_attempt_at)"
            " VALUES (?, ?, ?, ?, 0, ?)",
            (
                notification.job_id,
                at,
                notification.kind,
                _json_to_db(notification.payload),
                _opt_time(notification.next_attempt_at) or at,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

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
        values = _settable(fields)
        at = self._now(now)
        if "finished_at" not in values:
            values["finished_at"] = at if to in FINISHED_STATES else None
        expected = _expected_states(expect)
        outbox = _as_notification(notify, job_id)

        def move(conn: sqlite3.Connection) -> Job:
            src = self._locked_state(conn, job_id)
            if expected is not None and src not in expected:
                raise StaleState(job_id, expected, src)
            check_transition(src, to)
            self._update(conn, job_id, at, {"state": to.value, **values})
            self._record_call(conn, job_id, values)
            self._insert_event(conn, job_id, at, src, to, detail, data)
            if outbox is not None:
                self._insert_notification(conn, at, outbox)
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
        values = _settable(fields)
        at = self._now(now)
        expected = _expected_states(expect)

        def update(conn: sqlite3.Connection) -> Job:
            state = self._locked_state(conn, job_id)
            if expected is not None and state not in expected:
                raise StaleState(job_id, expected, state)
            self._update(conn, job_id, at, values)
            self._record_call(conn, job_id, values)
            return self._read_job(conn, job_id)

        return self._grouped(update)

    @staticmethod
    def _record_call(conn: sqlite3.Connection, job_id: str, values: Mapping[str, object]) -> None:
        guid = values.get("provider_guid")
        if isinstance(guid, str):
            conn.execute(
                "INSERT OR IGNORE INTO provider_calls (guid, job_id) VALUES (?, ?)", (guid, job_id)
            )

    @staticmethod
    def _locked_state(conn: sqlite3.Connection, job_id: str) -> JobState:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return JobState(row["state"])

    @staticmethod
    def _update(conn: sqlite3.Connection, job_id: str, at: str, values: dict[str, object]) -> None:
        # Column names come from _SETTABLE (or "state"), never from the caller's text.
        assignments = ", ".join(f"{name} = ?" for name in ("updated_at", *values))
        conn.execute(
            f"UPDATE jobs SET {assignments} WHERE id = ?",  # noqa: S608
            (at, *values.values(), job_id),
        )

    # -------------------------------------------------------------- reading jobs

    def get_job(self, job_id: str) -> Job | None:
        rows = self._query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    @staticmethod
    def _read_job(conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"no job {job_id}")
        return _job_from_row(row)

    def documents(self, job_id: str) -> list[Document]:
        rows = self._query("SELECT * FROM documents WHERE job_id = ? ORDER BY seq", (job_id,))
        return [_document_from_row(row) for row in rows]

    def events(self, job_id: str) -> list[Event]:
        rows = self._query("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job_id,))
        return [_event_from_row(row) for row in rows]

    def find_by_provider_guid(self, guid: str) -> Job | None:
        rows = self._query(
            "SELECT * FROM jobs WHERE provider_guid = ?"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (guid,),
        )
        return _job_from_row(rows[0]) if rows else None

    def call_owner(self, guid: str) -> str | None:
        """The job that a provider call (a GUID) was ever made for, now or before a retry."""
        rows = self._query("SELECT job_id FROM provider_calls WHERE guid = ?", (guid,))
        return str(rows[0]["job_id"]) if rows else None

    def due_jobs(self, now: datetime, limit: int) -> list[Job]:
        """Queued jobs whose time has come, oldest first."""
        rows = self._query(
            "SELECT * FROM jobs WHERE state = ? AND (not_before IS NULL OR not_before <= ?)"
            " ORDER BY created_at, rowid LIMIT ?",
            (JobState.QUEUED.value, _time_to_db(now), limit),
        )
        return [_job_from_row(row) for row in rows]

    def next_not_before(self) -> datetime | None:
        """When the earliest queued job that waits for its time may go (None: none waits)."""
        rows = self._query(
            "SELECT MIN(not_before) AS at FROM jobs WHERE state = ? AND not_before IS NOT NULL",
            (JobState.QUEUED.value,),
        )
        return _opt_time_from_db(rows[0]["at"])

    def jobs_in_states(self, states: Iterable[JobState], limit: int | None = None) -> list[Job]:
        wanted = [JobState(s).value for s in states]
        rows = self._query(
            f"SELECT * FROM jobs WHERE state IN ({_placeholders(len(wanted))})"  # noqa: S608
            " ORDER BY created_at, rowid LIMIT ?",
            (*wanted, -1 if limit is None else limit),
        )
        return [_job_from_row(row) for row in rows]

    def group_jobs(self, group_id: str) -> list[Job]:
        rows = self._query(
            "SELECT * FROM jobs WHERE group_id = ? ORDER BY created_at, rowid", (group_id,)
        )
        return [_job_from_row(row) for row in rows]

    def count_intake_jobs(self, intake: Intake, since: datetime, *, ref: str, value: str) -> int:
        """Jobs of one intake created since a moment whose intake_ref[ref] is `value` (say,
        the faxes one sender sent today)."""
        rows = self._query(
            "SELECT count(*) AS n FROM jobs WHERE intake = ? AND created_at >= ?"
            " AND json_extract(intake_ref, '$.' || ?) = ?",
            (Intake(intake).value, _time_to_db(since), ref, value),
        )
        return int(rows[0]["n"])

    def count_in_states(self, states: Iterable[JobState]) -> int:
        """Jobs in these states, counted on the state index: the cost follows them, not
        every job ever kept."""
        wanted = [JobState(state).value for state in states]
        rows = self._query(
            f"SELECT count(*) AS n FROM jobs WHERE state IN ({_placeholders(len(wanted))})",  # noqa: S608
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
        return [_job_from_row(row) for row in rows]

    def due_polls(self, now: datetime, limit: int) -> list[Job]:
        """Jobs the provider may still be working on whose next poll is due, most overdue
        first. A settled job is never returned, whatever its next_poll_at says."""
        states = [s.value for s in (*ACTIVE_STATES, JobState.UNCERTAIN)]
        rows = self._query(
            "SELECT * FROM jobs WHERE next_poll_at <= ?"  # noqa: S608
            f" AND state IN ({_placeholders(len(states))})"
            " ORDER BY next_poll_at, id LIMIT ?",
            (_time_to_db(now), *states, limit),
        )
        return [_job_from_row(row) for row in rows]

    # -------------------------------------------------------------- unmatched reports

    def keep_unmatched(
        self,
        guid: str,
        status: str,
        body: Mapping[str, Any],
        *,
        now: datetime,
        keep_for: timedelta,
        keep_at_most: int,
    ) -> int:
        """Keep a report for a GUID no job holds; drop those older than `keep_for` and the
        oldest beyond `keep_at_most`. Returns how many were dropped for room."""

        def keep(conn: sqlite3.Connection) -> int:
            conn.execute(
                "INSERT OR IGNORE INTO unmatched_reports (guid, status, received_at, body)"
                " VALUES (?, ?, ?, ?)",
                (guid, status, _time_to_db(now), _json_to_db(body)),
            )
            conn.execute(
                "DELETE FROM unmatched_reports WHERE received_at < ?",
                (_time_to_db(now - keep_for),),
            )
            return conn.execute(
                "DELETE FROM unmatched_reports WHERE rowid IN (SELECT rowid FROM"
                " unmatched_reports ORDER BY received_at DESC LIMIT -1 OFFSET ?)",
                (keep_at_most,),
            ).rowcount

        return self._grouped(keep)

    def unmatched_reports(self, guid: str | None = None) -> list[UnmatchedReport]:
        """Reports kept for unknown GUIDs, oldest first (those of one GUID when given)."""
        if guid is None:
            rows = self._query("SELECT * FROM unmatched_reports ORDER BY received_at, guid")
        else:
            rows = self._query(
                "SELECT * FROM unmatched_reports WHERE guid = ? ORDER BY received_at", (guid,)
            )
        return [
            UnmatchedReport(
                guid=row["guid"],
                status=row["status"],
                received_at=_time_from_db(row["received_at"]),
                body=_json_from_db(row["body"]),
            )
            for row in rows
        ]

    def unmatched_guids(self) -> set[str]:
        return {row["guid"] for row in self._query("SELECT DISTINCT guid FROM unmatched_reports")}

    def drop_unmatched(self, guid: str) -> None:
        """A job holds this GUID now: its reports were applied."""

        def drop(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM unmatched_reports WHERE guid = ?", (guid,))

        self._grouped(drop)

    # -------------------------------------------------------------- outbox

    def add_notification(
        self, notification: NewNotification, *, now: datetime | None = None
    ) -> Notification:
        """A notification not tied to a state change (an inbound fax, say)."""
        at = self._now(now)
        with self._write() as conn:
            row_id = self._insert_notification(conn, at, notification)
            row = conn.execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return _notification_from_row(row)

    def pending_notifications(self, now: datetime, limit: int) -> list[Notification]:
        rows = self._query(
            "SELECT * FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (_time_to_db(now), limit),
        )
        return [_notification_from_row(row) for row in rows]

    def notifications(self, job_id: str) -> list[Notification]:
        rows = self._query("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", (job_id,))
        return [_notification_from_row(row) for row in rows]

    def get_notification(self, notification_id: int) -> Notification | None:
        rows = self._query("SELECT * FROM outbox WHERE id = ?", (notification_id,))
        return _notification_from_row(rows[0]) if rows else None

    def mark_delivered(self, notification_id: int, at: datetime) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE id = ?",
                (_time_to_db(at), notification_id),
            )
            _require_row(cursor, notification_id)

    def mark_delivery_failed(
        self, notification_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Record a failed delivery; `next_attempt_at=None` gives the notification up."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (error, _opt_time(next_attempt_at), notification_id),
            )
            _require_row(cursor, notification_id)

    # -------------------------------------------------------------- inbound faxes
    # (faxgate/inbound/ owns these; row conversions are at the end of the module.)

    def record_inbound(
        self,
        fax: NewInboundFax,
        deliveries: Sequence[NewDelivery] = (),
        *,
        now: datetime | None = None,
    ) -> tuple[InboundFax, bool]:
        """Record a received fax, its deliveries and their outbox rows in one transaction:
        (the fax, True). A fax whose provider GUID is already recorded is left as it was:
        (that fax, False)."""
        at = self._now(now)
        with self._write() as conn:
            known = conn.execute(
                "SELECT * FROM inbound_faxes WHERE provider_guid = ?", (fax.provider_guid,)
            ).fetchone()
            if known is not None:
                return _inbound_fax_from_row(known), False
            fax_id = self._unused_inbound_id(conn, _time_from_db(at))
            document = fax.document
            conn.execute(
                """
                INSERT INTO inbound_faxes (id, received_at, provider_guid, to_number,
                    from_number, pages, arrived_at, route, document_path, document_size,
                    document_sha256, content_type, note, transaction_json)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    fax_id,
                    at,
                    fax.provider_guid,
                    fax.to_number,
                    fax.from_number,
                    fax.pages,
                    _opt_time(fax.arrived_at),
                    fax.route,
                    None if document is None else str(document.path),
                    None if document is None else document.size,
                    None if document is None else document.sha256,
                    None if document is None else document.content_type,
                    fax.note,
                    _json_to_db(fax.transaction),
                ),
            )
            for seq, delivery in enumerate(deliveries):
                outbox_id = self._insert_notification(
                    conn,
                    at,
                    NewNotification(
                        kind=NOTIFICATION_KIND,
                        payload={**delivery.payload, "fax_id": fax_id, "seq": seq},
                    ),
                )
                conn.execute(
                    "INSERT INTO inbound_deliveries (fax_id, seq, kind, target, outbox_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (fax_id, seq, delivery.kind, delivery.target, outbox_id),
                )
            row = conn.execute("SELECT * FROM inbound_faxes WHERE id = ?", (fax_id,)).fetchone()
        return _inbound_fax_from_row(row), True

    @staticmethod
    def _unused_inbound_id(conn: sqlite3.Connection, now: datetime) -> str:
        while True:
            fax_id = new_job_id(now)
            found = conn.execute("SELECT 1 FROM inbound_faxes WHERE id = ?", (fax_id,))
            if found.fetchone() is None:
                return fax_id

    def get_inbound(self, fax_id: str) -> InboundFax | None:
        rows = self._query("SELECT * FROM inbound_faxes WHERE id = ?", (fax_id,))
        return _inbound_fax_from_row(rows[0]) if rows else None

    def find_inbound_by_guid(self, provider_guid: str) -> InboundFax | None:
        rows = self._query("SELECT * FROM inbound_faxes WHERE provider_guid = ?", (provider_guid,))
        return _inbound_fax_from_row(rows[0]) if rows else None

    def recent_inbound(self, limit: int) -> list[InboundFax]:
        rows = self._query(
            "SELECT * FROM inbound_faxes ORDER BY received_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [_inbound_fax_from_row(row) for row in rows]

    def inbound_deliveries(self, fax_id: str) -> list[InboundDelivery]:
        """The fax's deliveries with how their outbox rows stand."""
        rows = self._query(
            "SELECT d.*, o.attempts, o.last_error, o.next_attempt_at,"
            " o.delivered_at AS outbox_delivered_at"
            " FROM inbound_deliveries AS d LEFT JOIN outbox AS o ON o.id = d.outbox_id"
            " WHERE d.fax_id = ? ORDER BY d.seq",
            (fax_id,),
        )
        return [_inbound_delivery_from_row(row) for row in rows]

    def mark_inbound_delivered(
        self, fax_id: str, seq: int, *, detail: str, now: datetime | None = None
    ) -> None:
        """Record that a delivery is done (its outbox row is marked by the notifier)."""
        at = self._now(now)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE inbound_deliveries SET delivered_at = ?, detail = ?"
                " WHERE fax_id = ? AND seq = ?",
                (at, detail, fax_id, seq),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"no delivery {seq} of inbound fax {fax_id}")


def _require_row(cursor: sqlite3.Cursor, notification_id: int) -> None:
    if cursor.rowcount != 1:
        raise StoreError(f"no notification {notification_id}")


def _expected_states(expect: JobState | Iterable[JobState] | None) -> frozenset[JobState] | None:
    if expect is None:
        return None
    if isinstance(expect, str):  # a JobState is a str: do not iterate its letters
        return frozenset({JobState(expect)})
    return frozenset(JobState(s) for s in expect)


def _as_notification(
    notify: Mapping[str, Any] | NewNotification | None, job_id: str
) -> NewNotification | None:
    if notify is None:
        return None
    if isinstance(notify, NewNotification):
        return NewNotification(
            kind=notify.kind,
            payload=notify.payload,
            job_id=job_id,
            next_attempt_at=notify.next_attempt_at,
        )
    return NewNotification(payload=notify, job_id=job_id)


# ------------------------------------------------------------------ inbound rows


def _inbound_fax_from_row(row: sqlite3.Row) -> InboundFax:
    document = None
    if row["document_path"] is not None:
        document = ReceivedDocument(
            path=Path(row["document_path"]),
            size=row["document_size"],
            sha256=row["document_sha256"],
            content_type=row["content_type"],
        )
    return InboundFax(
        id=row["id"],
        received_at=_time_from_db(row["received_at"]),
        provider_guid=row["provider_guid"],
        to_number=row["to_number"],
        from_number=row["from_number"],
        pages=row["pages"],
        arrived_at=_opt_time_from_db(row["arrived_at"]),
        route=row["route"],
        document=document,
        note=row["note"],
        transaction=_json_from_db(row["transaction_json"]),
    )


def _inbound_delivery_from_row(row: sqlite3.Row) -> InboundDelivery:
    pending_in_outbox = row["outbox_id"] is not None and row["outbox_delivered_at"] is None
    return InboundDelivery(
        fax_id=row["fax_id"],
        seq=row["seq"],
        kind=row["kind"],
        target=row["target"],
        outbox_id=row["outbox_id"],
        delivered_at=_opt_time_from_db(row["delivered_at"]),
        detail=row["detail"],
        attempts=row["attempts"] or 0,
        last_error=row["last_error"],
        given_up=pending_in_outbox and row["next_attempt_at"] is None,
    )
