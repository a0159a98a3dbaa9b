"""The sandbox's memory: SQLite (WAL) for records, a folder of documents by sha256.

Every method is a short synchronous statement; `transaction()` groups several into one
commit. A test server on one event loop can afford that.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faxgate.sandbox.records import (
    AccountRecord,
    AttemptRecord,
    CallbackRecord,
    CoverPage,
    FileRecord,
    Step,
    TransmissionRecord,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    guid TEXT PRIMARY KEY,
    inbound_callback_url TEXT,
    outbound_callback_url TEXT,
    send_confirmation_emails INTEGER NOT NULL DEFAULT 0,
    include_pdfs_in_received_emails INTEGER NOT NULL DEFAULT 1,
    confirmed INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS lines (
    account_guid TEXT NOT NULL REFERENCES accounts(guid),
    number TEXT NOT NULL,
    bought_at REAL NOT NULL,
    PRIMARY KEY (account_guid, number)
);
CREATE TABLE IF NOT EXISTS transmissions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    guid TEXT NOT NULL UNIQUE,
    account_guid TEXT NOT NULL REFERENCES accounts(guid),
    to_number TEXT NOT NULL,
    from_number TEXT NOT NULL,
    is_inbound INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_code TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    pages INTEGER NOT NULL,
    cover_to TEXT,
    cover_from TEXT,
    cover_message TEXT,
    fingerprint TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT '[]',
    next_at REAL,
    removed_at REAL
);
CREATE INDEX IF NOT EXISTS transmissions_due ON transmissions(next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS files (
    transmission_guid TEXT NOT NULL REFERENCES transmissions(guid),
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    pages INTEGER NOT NULL,
    readable INTEGER NOT NULL,
    kind TEXT,
    PRIMARY KEY (transmission_guid, position)
);
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transmission_guid TEXT NOT NULL,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    payload TEXT NOT NULL,
    document_sha256 TEXT,
    document_name TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL,
    state TEXT NOT NULL DEFAULT 'pending',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    callback_id INTEGER NOT NULL REFERENCES callbacks(id),
    attempt INTEGER NOT NULL,
    reason TEXT NOT NULL,
    status INTEGER,
    error TEXT,
    at REAL NOT NULL
);
"""

_TRANSMISSION_COLUMNS = (
    "seq, guid, account_guid, to_number, from_number, is_inbound, status, error_code, "
    "created_at, updated_at, pages, cover_to, cover_from, cover_message, fingerprint, plan, "
    "next_at, removed_at"
)


class SandboxStore:
    def __init__(self, state_dir: Path) -> None:
        self._documents = state_dir / "documents"
        self._documents.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_dir / "sandbox.sqlite3", isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a test server: durable enough in WAL
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(transmissions)")}
        if "removed_at" not in columns:  # a state directory from before removal was modelled
            self._db.execute("ALTER TABLE transmissions ADD COLUMN removed_at REAL")
        self._depth = 0

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for everything inside; nests."""
        if self._depth == 0:
            self._db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self._db.execute("COMMIT")

    # Documents -------------------------------------------------------------------------

    def put_document(self, sha256: str, content: bytes) -> None:
        path = self._documents / sha256
        if path.exists():
            return
        partial = path.with_suffix(".part")
        partial.write_bytes(content)
        os.replace(partial, path)

    def document(self, sha256: str) -> bytes:
        return (self._documents / sha256).read_bytes()

    # Account and lines -----------------------------------------------------------------

    def ensure_account(self, guid: str, initial_lines: Sequence[str]) -> None:
        """Create the account with its first lines the first time only."""
        with self.transaction():
            created = self._db.execute(
                "INSERT OR IGNORE INTO accounts (guid) VALUES (?)", (guid,)
            ).rowcount
            if created:
                for number in initial_lines:
                    self.add_line(guid, number)

    def account(self, guid: str) -> AccountRecord | None:
        row = self._db.execute("SELECT * FROM accounts WHERE guid = ?", (guid,)).fetchone()
        if row is None:
            return None
        return AccountRecord(
            guid=row["guid"],
            inbound_callback_url=row["inbound_callback_url"],
            outbound_callback_url=row["outbound_callback_url"],
            send_confirmation_emails=bool(row["send_confirmation_emails"]),
            include_pdfs_in_received_emails=bool(row["include_pdfs_in_received_emails"]),
            confirmed=bool(row["confirmed"]),
        )

    def update_account(self, guid: str, **changes: Any) -> None:
        allowed = {
            "inbound_callback_url",
            "outbound_callback_url",
            "send_confirmation_emails",
            "include_pdfs_in_received_emails",
            "confirmed",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"unknown account fields: {sorted(unknown)}")
        for column, value in changes.items():
            self._db.execute(f"UPDATE accounts SET {column} = ? WHERE guid = ?", (value, guid))  # noqa: S608 - column names checked above

    def lines(self, account_guid: str) -> list[str]:
        rows = self._db.execute(
            "SELECT number FROM lines WHERE account_guid = ? ORDER BY bought_at, rowid",
            (account_guid,),
        )
        return [row["number"] for row in rows]

    def all_line_numbers(self) -> list[str]:
        return [row["number"] for row in self._db.execute("SELECT number FROM lines")]

    def add_line(self, account_guid: str, number: str) -> None:
        self._db.execute(
            "INSERT INTO lines (account_guid, number, bought_at) VALUES (?, ?, ?)",
            (account_guid, number, time.time()),
        )

    def remove_line(self, account_guid: str, number: str) -> bool:
        return (
            self._db.execute(
                "DELETE FROM lines WHERE account_guid = ? AND number = ?", (account_guid, number)
            ).rowcount
            > 0
        )

    # Transmissions ---------------------------------------------------------------------

    def add_transmission(self, record: TransmissionRecord) -> TransmissionRecord:
        with self.transaction():
            self._db.execute(
                f"INSERT INTO transmissions ({_TRANSMISSION_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    record.guid,
                    record.account_guid,
                    record.to,
                    record.from_,
                    int(record.is_inbound),
                    record.status,
                    record.error_code,
                    record.created_at,
                    record.updated_at,
                    record.pages,
                    record.cover.to,
                    record.cover.from_,
                    record.cover.message,
                    record.fingerprint,
                    _plan_to_json(record.plan),
                    record.next_at,
                ),
            )
            for file in record.files:
                self._db.execute(
                    "INSERT INTO files (transmission_guid, position, name, sha256, size, pages,"
                    " readable, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.guid,
                        file.position,
                        file.name,
                        file.sha256,
                        file.size,
                        file.pages,
                        int(file.readable),
                        file.kind,
                    ),
                )
        stored = self.transmission(record.account_guid, record.guid)
        assert stored is not None
        return stored

    def advance(
        self,
        guid: str,
        *,
        status: str,
        error_code: str | None,
        plan: tuple[Step, ...],
        next_at: float | None,
        updated_at: float,
    ) -> None:
        self._db.execute(
            "UPDATE transmissions SET status = ?, error_code = ?, plan = ?, next_at = ?,"
            " updated_at = ? WHERE guid = ?",
            (status, error_code, _plan_to_json(plan), next_at, updated_at, guid),
        )

    def remove(self, guid: str, at: float) -> None:
        """The provider no longer shows it (GET and the list); inspection still does."""
        self._db.execute(
            "UPDATE transmissions SET removed_at = ? WHERE guid = ? AND removed_at IS NULL",
            (at, guid),
        )

    def postpone(self, guid: str, next_at: float) -> None:
        self._db.execute("UPDATE transmissions SET next_at = ? WHERE guid = ?", (next_at, guid))

    def transmission(self, account_guid: str, guid: str) -> TransmissionRecord | None:
        row = self._db.execute(
            f"SELECT {_TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
            "WHERE account_guid = ? AND guid = ? AND removed_at IS NULL",
            (account_guid, guid),
        ).fetchone()
        return None if row is None else self._with_files(row)

    def transmission_by_guid(self, guid: str) -> TransmissionRecord | None:
        row = self._db.execute(
            f"SELECT {_TRANSMISSION_COLUMNS} FROM transmissions WHERE guid = ?",  # noqa: S608
            (guid,),
        ).fetchone()
        return None if row is None else self._with_files(row)

    def count_transmissions(self, account_guid: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transmissions WHERE account_guid = ? AND removed_at IS NULL",
            (account_guid,),
        ).fetchone()
        return int(row[0])

    def newest_transmissions(
        self, account_guid: str, *, offset: int, limit: int
    ) -> list[TransmissionRecord]:
        rows = self._db.execute(
            f"SELECT {_TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
            "WHERE account_guid = ? AND removed_at IS NULL"
            " ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?",
            (account_guid, limit, offset),
        )
        return [_transmission(row, ()) for row in rows]

    def all_transmissions(self) -> list[TransmissionRecord]:
        rows = self._db.execute(
            f"SELECT {_TRANSMISSION_COLUMNS} FROM transmissions ORDER BY seq"  # noqa: S608
        ).fetchall()
        files = self._files_by_transmission()
        return [_transmission(row, files.get(row["guid"], ())) for row in rows]

    def count_in_flight(self, account_guid: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transmissions WHERE account_guid = ? AND is_inbound = 0"
            " AND status IN ('P', 'T')",
            (account_guid,),
        ).fetchone()
        return int(row[0])

    def due_transmissions(self, now: float) -> list[TransmissionRecord]:
        rows = self._db.execute(
            f"SELECT {_TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
            "WHERE next_at IS NOT NULL AND next_at <= ? ORDER BY next_at, seq",
            (now,),
        ).fetchall()
        return [self._with_files(row) for row in rows]

    def next_transmission_due(self) -> float | None:
        row = self._db.execute("SELECT MIN(next_at) FROM transmissions").fetchone()
        return None if row[0] is None else float(row[0])

    def _with_files(self, row: sqlite3.Row) -> TransmissionRecord:
        rows = self._db.execute(
            "SELECT * FROM files WHERE transmission_guid = ? ORDER BY position", (row["guid"],)
        )
        return _transmission(row, tuple(_file(file) for file in rows))

    def _files_by_transmission(self) -> dict[str, tuple[FileRecord, ...]]:
        grouped: dict[str, list[FileRecord]] = {}
        for row in self._db.execute("SELECT * FROM files ORDER BY transmission_guid, position"):
            grouped.setdefault(row["transmission_guid"], []).append(_file(row))
        return {guid: tuple(files) for guid, files in grouped.items()}

    # Callbacks -------------------------------------------------------------------------

    def add_callback(
        self,
        *,
        transmission_guid: str,
        kind: str,
        url: str,
        payload: str,
        document_sha256: str | None = None,
        document_name: str | None = None,
        due_at: float,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO callbacks (transmission_guid, kind, url, payload, document_sha256,"
            " document_name, next_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (transmission_guid, kind, url, payload, document_sha256, document_name, due_at, due_at),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def due_callbacks(self, now: float) -> list[CallbackRecord]:
        rows = self._db.execute(
            "SELECT * FROM callbacks WHERE state = 'pending' AND next_at <= ? ORDER BY next_at, id",
            (now,),
        )
        return [_callback(row) for row in rows]

    def next_callback_due(self, excluding: Sequence[int]) -> float | None:
        marks = ",".join("?" * len(excluding))
        row = self._db.execute(
            f"SELECT MIN(next_at) FROM callbacks WHERE state = 'pending' AND id NOT IN ({marks})",  # noqa: S608 - placeholders only
            tuple(excluding),
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def record_attempt(
        self,
        callback_id: int,
        *,
        attempt: int,
        reason: str,
        status: int | None,
        error: str | None,
        at: float,
    ) -> None:
        self._db.execute(
            "INSERT INTO attempts (callback_id, attempt, reason, status, error, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (callback_id, attempt, reason, status, error, at),
        )

    def settle_callback(
        self, callback_id: int, *, attempts: int, state: str, next_at: float | None
    ) -> None:
        self._db.execute(
            "UPDATE callbacks SET attempts = ?, state = ?, next_at = ? WHERE id = ?",
            (attempts, state, next_at, callback_id),
        )

    def callbacks(self) -> list[CallbackRecord]:
        return [_callback(row) for row in self._db.execute("SELECT * FROM callbacks ORDER BY id")]

    def attempts(self) -> list[AttemptRecord]:
        rows = self._db.execute(
            "SELECT a.*, c.transmission_guid, c.kind, c.url FROM attempts a"
            " JOIN callbacks c ON c.id = a.callback_id ORDER BY a.id"
        )
        return [
            AttemptRecord(
                id=row["id"],
                callback_id=row["callback_id"],
                transmission_guid=row["transmission_guid"],
                kind=row["kind"],
                url=row["url"],
                attempt=row["attempt"],
                reason=row["reason"],
                status=row["status"],
                error=row["error"],
                at=row["at"],
            )
            for row in rows
        ]


def _plan_to_json(plan: tuple[Step, ...]) -> str:
    return json.dumps([[step.status, step.error_code, step.after] for step in plan])


def _plan_from_json(text: str) -> tuple[Step, ...]:
    return tuple(
        Step(status, error_code, float(after)) for status, error_code, after in json.loads(text)
    )


def _transmission(row: sqlite3.Row, files: tuple[FileRecord, ...]) -> TransmissionRecord:
    return TransmissionRecord(
        guid=row["guid"],
        seq=row["seq"],
        account_guid=row["account_guid"],
        to=row["to_number"],
        from_=row["from_number"],
        is_inbound=bool(row["is_inbound"]),
        status=row["status"],
        error_code=row["error_code"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pages=row["pages"],
        cover=CoverPage(row["cover_to"], row["cover_from"], row["cover_message"]),
        fingerprint=row["fingerprint"],
        plan=_plan_from_json(row["plan"]),
        next_at=row["next_at"],
        files=files,
        removed_at=row["removed_at"],
    )


def _file(row: sqlite3.Row) -> FileRecord:
    return FileRecord(
        position=row["position"],
        name=row["name"],
        sha256=row["sha256"],
        size=row["size"],
        pages=row["pages"],
        readable=bool(row["readable"]),
        kind=row["kind"],
    )


def _callback(row: sqlite3.Row) -> CallbackRecord:
    return CallbackRecord(
        id=row["id"],
        transmission_guid=row["transmission_guid"],
        kind=row["kind"],
        url=row["url"],
        payload=row["payload"],
        document_sha256=row["document_sha256"],
        document_name=row["document_name"],
        attempts=row["attempts"],
        next_at=row["next_at"],
        state=row["state"],
        created_at=row["created_at"],
    )
