"""The schema, one forward-only step at a time, and bringing a file up to date."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from faxgate.store.values import SchemaTooNew

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
    (
        # Messages the IMAP intake took from a mailbox, recorded with their jobs: one taken
        # before a crash is moved on the next start, never queued again.
        """
        CREATE TABLE imap_taken (
            mailbox     TEXT NOT NULL,
            uidvalidity INTEGER NOT NULL,
            uid         INTEGER NOT NULL,
            message_id  TEXT,
            outcome     TEXT NOT NULL,
            taken_at    TEXT NOT NULL,
            PRIMARY KEY (mailbox, uidvalidity, uid)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX imap_taken_by_message_id ON imap_taken (mailbox, message_id)",
    ),
    (
        # Leases: the instance that claimed a job (to send it, poll it or reconcile it) or
        # a notification (to deliver it), until when. Several instances on one PostgreSQL
        # database each take their own work this way.
        "ALTER TABLE jobs ADD COLUMN lease_owner TEXT",
        "ALTER TABLE jobs ADD COLUMN lease_until TEXT",
        "ALTER TABLE outbox ADD COLUMN lease_owner TEXT",
        "ALTER TABLE outbox ADD COLUMN lease_until TEXT",
    ),
    (
        # Sending policy: a job's priority (urgent 1, normal 0, bulk -1, plus its rule's),
        # why it waits when a rule holds it back (plain words, and a kind for the
        # metrics), and each number's line of queued jobs read at its head.
        "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE jobs ADD COLUMN wait_kind TEXT",
        "ALTER TABLE jobs ADD COLUMN wait_reason TEXT",
        # Who sent it (a mail sender, "folder:" and a hot folder): the faxes a sender had
        # sent in the last day, for limits per sender, counted on an index. Its turn:
        # within a priority the senders take turns, one sender's batch of 1,000 does not
        # hold another's single fax behind it (store/jobs.py).
        "ALTER TABLE jobs ADD COLUMN source TEXT",
        "ALTER TABLE jobs ADD COLUMN turn_at TEXT",
        "UPDATE jobs SET turn_at = created_at",
        "CREATE INDEX jobs_by_source ON jobs (source, submitted_at)",
        "CREATE INDEX jobs_by_source_turn ON jobs (source, state, turn_at)",
        "CREATE INDEX jobs_by_line ON jobs (state, to_number, priority DESC, created_at)",
        "CREATE INDEX jobs_by_priority ON jobs (state, priority DESC, turn_at, created_at)",
    ),
    (
        # Documents' bytes by digest, so that every instance sharing a PostgreSQL store
        # can read a document another took in; the spool is then a cache. On SQLite (one
        # host) the table stays empty: the same steps on both backends.
        """
        CREATE TABLE document_bytes (
            sha256    TEXT PRIMARY KEY,
            size      INTEGER NOT NULL,
            content   BLOB NOT NULL,
            stored_at TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        # The instances sharing a PostgreSQL store, each seen at its heartbeat: the
        # cluster as `faxgate status`, the status page, /healthz and /metrics show it.
        """
        CREATE TABLE instances (
            id         TEXT PRIMARY KEY,
            host       TEXT NOT NULL,
            pid        INTEGER NOT NULL,
            version    TEXT NOT NULL,
            started_at TEXT NOT NULL,
            last_seen  TEXT NOT NULL,
            stopped_at TEXT
        ) WITHOUT ROWID
        """,
    ),
    (
        # Retention: when a document was removed ([retention] documents). The row stays
        # (the job's history names it); its file, and on PostgreSQL its bytes, go.
        "ALTER TABLE documents ADD COLUMN removed_at TEXT",
        "ALTER TABLE inbound_faxes ADD COLUMN removed_at TEXT",
        "CREATE INDEX documents_by_sha256 ON documents (sha256)",
        "CREATE INDEX jobs_by_finished ON jobs (finished_at)",
        "CREATE INDEX inbound_faxes_by_document ON inbound_faxes (document_path)",
        "CREATE INDEX inbound_faxes_by_sha256 ON inbound_faxes (document_sha256)",
        "CREATE INDEX documents_by_removed ON documents (removed_at)",
        "CREATE INDEX inbound_faxes_by_removed ON inbound_faxes (removed_at)",
    ),
)


# ------------------------------------------------------------------ migrations


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One SQLite write transaction on an autocommit connection: the file's write lock
    taken at its start (BEGIN IMMEDIATE), committed at the end, rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


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
        with write_transaction(conn):
            if schema_version(conn) < version:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
    return schema_version(conn)
