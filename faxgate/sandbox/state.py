"""The sandbox's memory: SQLite (WAL) for records, a folder of documents by sha256.

Every method is a short synchronous statement; `transaction()` groups several into one
commit. A test server on one event loop can afford that.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faxgate.sandbox import schema
from faxgate.sandbox.callback_rows import CallbackRows
from faxgate.sandbox.records import AccountRecord, FileRecord, Step, TransmissionRecord
from faxgate.sandbox.rows import file_from_row, from_row, plan_to_json, transmission_from_row
from faxgate.sandbox.schema import TRANSMISSION_COLUMNS


class SandboxStore(CallbackRows):
    def __init__(self, state_dir: Path) -> None:
        self._documents = state_dir / "documents"
        self._documents.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_dir / "sandbox.sqlite3", isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a test server: durable enough in WAL
        self._db.execute("PRAGMA foreign_keys=ON")
        schema.create(self._db)
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
        return from_row(
            AccountRecord,
            row,
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
            "event_callback_url",
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
        removed = self._db.execute(
            "DELETE FROM lines WHERE account_guid = ? AND number = ?", (account_guid, number)
        ).rowcount
        if removed:
            self._db.execute("DELETE FROM line_users WHERE number = ?", (number,))
        return removed > 0

    def line_bought_at(self, account_guid: str, number: str) -> float | None:
        row = self._db.execute(
            "SELECT bought_at FROM lines WHERE account_guid = ? AND number = ?",
            (account_guid, number),
        ).fetchone()
        return None if row is None else float(row[0])

    def line_users(self, number: str) -> list[str]:
        """Who else may use a line (v3): account ids or email addresses, in order given."""
        rows = self._db.execute(
            "SELECT user FROM line_users WHERE number = ? ORDER BY rowid", (number,)
        )
        return [row["user"] for row in rows]

    def set_line_user(self, number: str, user: str, *, present: bool) -> None:
        if present:
            self._db.execute("INSERT OR IGNORE INTO line_users VALUES (?, ?)", (number, user))
        else:
            self._db.execute("DELETE FROM line_users WHERE number = ? AND user = ?", (number, user))

    # Transmissions ---------------------------------------------------------------------

    def add_transmission(self, record: TransmissionRecord) -> TransmissionRecord:
        with self.transaction():
            self._db.execute(
                f"INSERT INTO transmissions ({TRANSMISSION_COLUMNS}) "  # noqa: S608 - constant
                "VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?)",
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
                    plan_to_json(record.plan),
                    record.next_at,
                    record.title,
                    int(record.test_mode),
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
            (status, error_code, plan_to_json(plan), next_at, updated_at, guid),
        )

    def remove(self, guid: str, at: float) -> None:
        """The provider no longer shows it (GET and the list); inspection still does."""
        self._db.execute(
            "UPDATE transmissions SET removed_at = ? WHERE guid = ? AND removed_at IS NULL",
            (at, guid),
        )

    def delete(self, guid: str, at: float) -> None:
        """Removed because the client asked: gone from GET and the list, and said so (410)."""
        self._db.execute(
            "UPDATE transmissions SET deleted_at = ?, removed_at = COALESCE(removed_at, ?)"
            " WHERE guid = ?",
            (at, at, guid),
        )

    def postpone(self, guid: str, next_at: float) -> None:
        self._db.execute("UPDATE transmissions SET next_at = ? WHERE guid = ?", (next_at, guid))

    def transmission(self, account_guid: str, guid: str) -> TransmissionRecord | None:
        row = self._db.execute(
            f"SELECT {TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
            "WHERE account_guid = ? AND guid = ? AND removed_at IS NULL",
            (account_guid, guid),
        ).fetchone()
        return None if row is None else self._with_files(row)

    def transmission_by_guid(self, guid: str) -> TransmissionRecord | None:
        row = self._db.execute(
            f"SELECT {TRANSMISSION_COLUMNS} FROM transmissions WHERE guid = ?",  # noqa: S608
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
            f"SELECT {TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
            "WHERE account_guid = ? AND removed_at IS NULL"
            " ORDER BY created_at DESC, seq DESC LIMIT ? OFFSET ?",
            (account_guid, limit, offset),
        )
        return [transmission_from_row(row, ()) for row in rows]

    def all_transmissions(self) -> list[TransmissionRecord]:
        rows = self._db.execute(
            f"SELECT {TRANSMISSION_COLUMNS} FROM transmissions ORDER BY seq"  # noqa: S608
        ).fetchall()
        files = self._files_by_transmission()
        return [transmission_from_row(row, files.get(row["guid"], ())) for row in rows]

    def count_in_flight(self, account_guid: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transmissions WHERE account_guid = ? AND is_inbound = 0"
            " AND status IN ('P', 'T')",
            (account_guid,),
        ).fetchone()
        return int(row[0])

    def count_in_flight_to(self, account_guid: str, to: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM transmissions WHERE account_guid = ? AND is_inbound = 0"
            " AND status IN ('P', 'T') AND to_number = ?",
            (account_guid, to),
        ).fetchone()
        return int(row[0])

    def due_transmissions(self, now: float) -> list[TransmissionRecord]:
        rows = self._db.execute(
            f"SELECT {TRANSMISSION_COLUMNS} FROM transmissions "  # noqa: S608 - constant
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
        return transmission_from_row(row, tuple(file_from_row(file) for file in rows))

    def _files_by_transmission(self) -> dict[str, tuple[FileRecord, ...]]:
        grouped: dict[str, list[FileRecord]] = {}
        for row in self._db.execute("SELECT * FROM files ORDER BY transmission_guid, position"):
            grouped.setdefault(row["transmission_guid"], []).append(file_from_row(row))
        return {guid: tuple(files) for guid, files in grouped.items()}
