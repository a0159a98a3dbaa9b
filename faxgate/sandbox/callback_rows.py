"""The callbacks the sandbox owes and every attempt at one, as rows: a part of SandboxStore."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from faxgate.sandbox.records import AttemptRecord, CallbackRecord
from faxgate.sandbox.rows import from_row


class CallbackRows:
    _db: sqlite3.Connection

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
        return [from_row(CallbackRecord, row) for row in rows]

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
        return [
            from_row(CallbackRecord, row)
            for row in self._db.execute("SELECT * FROM callbacks ORDER BY id")
        ]

    def attempts(self) -> list[AttemptRecord]:
        rows = self._db.execute(
            "SELECT a.*, c.transmission_guid, c.kind, c.url FROM attempts a"
            " JOIN callbacks c ON c.id = a.callback_id ORDER BY a.id"
        )
        return [from_row(AttemptRecord, row) for row in rows]
