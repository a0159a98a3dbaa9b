"""The outbox: a row per notification owed, delivered and retried until it is out."""

from __future__ import annotations

from datetime import datetime, timedelta

from faxgate.domain.jobs import Notification
from faxgate.store.claims import Claim, Due, lease_rows
from faxgate.store.db import Database
from faxgate.store.dialect import Connection
from faxgate.store.rows import (
    json_to_db,
    notification_from_row,
    opt_time,
    require_row,
    time_to_db,
)
from faxgate.store.values import NewNotification


def insert_notification(conn: Connection, at: str, notification: NewNotification) -> int:
    row = conn.execute(
        "INSERT INTO outbox (job_id, created_at, kind, payload, attempts, next_attempt_at)"
        " VALUES (?, ?, ?, ?, 0, ?) RETURNING id",
        (
            notification.job_id,
            at,
            notification.kind,
            json_to_db(notification.payload),
            opt_time(notification.next_attempt_at) or at,
        ),
    ).fetchone()
    return int(row["id"])


class Outbox(Database):
    """The outbox table."""

    # -------------------------------------------------------------- outbox

    def add_notification(
        self, notification: NewNotification, *, now: datetime | None = None
    ) -> Notification:
        """A notification not tied to a state change (an inbound fax, say)."""
        at = self._now(now)
        with self._write() as conn:
            row_id = insert_notification(conn, at, notification)
            self._announce(conn, "outbox")
            row = conn.execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone()
        return notification_from_row(row)

    def pending_notifications(self, now: datetime, limit: int) -> list[Notification]:
        rows = self._query(
            "SELECT * FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (time_to_db(now), limit),
        )
        return [notification_from_row(row) for row in rows]

    def claim_notifications(
        self, now: datetime, limit: int, *, owner: str, lease: timedelta
    ) -> list[Notification]:
        """Take up to `limit` notifications due for delivery for `owner` until `now +
        lease`, as the jobs' claims do: committed before any delivery, passed over by
        another instance claiming at once, left to others until the lease runs out. A
        lease should outlast a delivery's timeout: a reply mailed by an owner that
        outlived its lease could be mailed again by the next one."""
        due = Due(
            "delivered_at IS NULL AND next_attempt_at <= ?",
            (time_to_db(now),),
            "next_attempt_at, id",
        )
        with self._write() as conn:
            rows = lease_rows(conn, self._dialect, "outbox", due, Claim(owner, now, lease, limit))
        return [notification_from_row(row) for row in rows]

    def notifications(self, job_id: str) -> list[Notification]:
        rows = self._query("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", (job_id,))
        return [notification_from_row(row) for row in rows]

    def get_notification(self, notification_id: int) -> Notification | None:
        rows = self._query("SELECT * FROM outbox WHERE id = ?", (notification_id,))
        return notification_from_row(rows[0]) if rows else None

    def mark_delivered(self, notification_id: int, at: datetime) -> None:
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE id = ?",
                (time_to_db(at), notification_id),
            )
            require_row(cursor, notification_id)

    def mark_delivery_failed(
        self, notification_id: int, error: str, next_attempt_at: datetime | None
    ) -> None:
        """Record a failed delivery; `next_attempt_at=None` gives the notification up."""
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                " WHERE id = ?",
                (error, opt_time(next_attempt_at), notification_id),
            )
            require_row(cursor, notification_id)
