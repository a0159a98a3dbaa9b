"""Callbacks for GUIDs no job holds, kept a while as evidence for reconciling."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from faxgate.store.db import Database
from faxgate.store.dialect import Connection
from faxgate.store.rows import (
    json_from_db,
    json_to_db,
    time_from_db,
    time_to_db,
)
from faxgate.store.values import UnmatchedReport


class UnmatchedReports(Database):
    """The unmatched_reports table."""

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

        insert = self._dialect.insert_ignoring(
            "unmatched_reports", ("guid", "status", "received_at", "body")
        )
        beyond = f"{self._dialect.no_limit} OFFSET ?"

        def keep(conn: Connection) -> int:
            conn.execute(insert, (guid, status, time_to_db(now), json_to_db(body)))
            conn.execute(
                "DELETE FROM unmatched_reports WHERE received_at < ?",
                (time_to_db(now - keep_for),),
            )
            return int(
                conn.execute(
                    "DELETE FROM unmatched_reports WHERE rowid IN (SELECT rowid FROM"  # noqa: S608
                    f" unmatched_reports ORDER BY received_at DESC {beyond})",
                    (keep_at_most,),
                ).rowcount
            )

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
                received_at=time_from_db(row["received_at"]),
                body=json_from_db(row["body"]),
            )
            for row in rows
        ]

    def unmatched_guids(self) -> set[str]:
        return {row["guid"] for row in self._query("SELECT DISTINCT guid FROM unmatched_reports")}

    def drop_unmatched(self, guid: str) -> None:
        """A job holds this GUID now: its reports were applied."""

        def drop(conn: Connection) -> None:
            conn.execute("DELETE FROM unmatched_reports WHERE guid = ?", (guid,))

        self._grouped(drop)
