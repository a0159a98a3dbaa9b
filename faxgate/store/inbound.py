"""Inbound faxes and the deliveries their routes owe."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from faxgate.domain.inbound import (
    NOTIFICATION_KIND,
    InboundDelivery,
    InboundFax,
    NewDelivery,
    NewInboundFax,
)
from faxgate.domain.jobs import new_job_id
from faxgate.store.dialect import Connection
from faxgate.store.document_bytes import DocumentBytes
from faxgate.store.outbox import insert_notification
from faxgate.store.rows import (
    inbound_delivery_from_row,
    inbound_fax_from_row,
    json_to_db,
    opt_time,
    time_from_db,
)
from faxgate.store.values import NewNotification, StoreError


class InboundFaxes(DocumentBytes):
    """The inbound_faxes and inbound_deliveries tables (and, on PostgreSQL, the faxes'
    documents' bytes)."""

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
        document = fax.document
        contents = self._read_for_keeping(
            () if document is None else [(document.path, document.sha256)]
        )
        with self._write() as conn:
            self._keep_bytes(conn, at, contents)
            while True:
                known = conn.execute(
                    "SELECT * FROM inbound_faxes WHERE provider_guid = ?", (fax.provider_guid,)
                ).fetchone()
                if known is not None:
                    return inbound_fax_from_row(known), False
                fax_id = self._unused_inbound_id(conn, time_from_db(at))
                # On PostgreSQL another instance may be recording the same fax (the
                # provider's callback reached both) or drawing the same id right now:
                # the insert waits for it and, if it did, inserts nothing; look again.
                if self._insert_inbound(conn, fax_id, fax, at):
                    break
            for seq, delivery in enumerate(deliveries):
                outbox_id = insert_notification(
                    conn,
                    at,
                    NewNotification(
                        kind=NOTIFICATION_KIND,
                        payload={**delivery.payload, "fax_id": fax_id, "seq": seq},
                    ),
                )
                self._announce(conn, "outbox")
                conn.execute(
                    "INSERT INTO inbound_deliveries (fax_id, seq, kind, target, outbox_id)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (fax_id, seq, delivery.kind, delivery.target, outbox_id),
                )
            row = conn.execute("SELECT * FROM inbound_faxes WHERE id = ?", (fax_id,)).fetchone()
        return inbound_fax_from_row(row), True

    def _insert_inbound(self, conn: Connection, fax_id: str, fax: NewInboundFax, at: str) -> bool:
        document = fax.document
        inserted = conn.execute(
            """
            INSERT INTO inbound_faxes (id, received_at, provider_guid, to_number,
                from_number, pages, arrived_at, route, document_path, document_size,
                document_sha256, content_type, note, transaction_json)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """  # noqa: S608
            + self._dialect.skip_taken_id
            + " RETURNING id",
            (
                fax_id,
                at,
                fax.provider_guid,
                fax.to_number,
                fax.from_number,
                fax.pages,
                opt_time(fax.arrived_at),
                fax.route,
                None if document is None else str(document.path),
                None if document is None else document.size,
                None if document is None else document.sha256,
                None if document is None else document.content_type,
                fax.note,
                json_to_db(fax.transaction),
            ),
        ).fetchone()
        return inserted is not None

    @staticmethod
    def _unused_inbound_id(conn: Connection, now: datetime) -> str:
        while True:
            fax_id = new_job_id(now)
            found = conn.execute("SELECT 1 FROM inbound_faxes WHERE id = ?", (fax_id,))
            if found.fetchone() is None:
                return fax_id

    def get_inbound(self, fax_id: str) -> InboundFax | None:
        """The fax, its document at a path on this host (on PostgreSQL, one another
        instance received is first copied into this instance's spool from the database)."""
        rows = self._query("SELECT * FROM inbound_faxes WHERE id = ?", (fax_id,))
        if not rows:
            return None
        fax = inbound_fax_from_row(rows[0])
        if fax.document is None or fax.removed_at is not None:
            return fax
        local = self._local_path(fax.document.path, fax.document.sha256)
        return replace(fax, document=replace(fax.document, path=local))

    def find_inbound_by_guid(self, provider_guid: str) -> InboundFax | None:
        rows = self._query("SELECT * FROM inbound_faxes WHERE provider_guid = ?", (provider_guid,))
        return inbound_fax_from_row(rows[0]) if rows else None

    def recent_inbound(self, limit: int) -> list[InboundFax]:
        rows = self._query(
            "SELECT * FROM inbound_faxes ORDER BY received_at DESC, rowid DESC LIMIT ?",
            (limit,),
        )
        return [inbound_fax_from_row(row) for row in rows]

    def inbound_deliveries(self, fax_id: str) -> list[InboundDelivery]:
        """The fax's deliveries with how their outbox rows stand."""
        rows = self._query(
            "SELECT d.*, o.attempts, o.last_error, o.next_attempt_at,"
            " o.delivered_at AS outbox_delivered_at"
            " FROM inbound_deliveries AS d LEFT JOIN outbox AS o ON o.id = d.outbox_id"
            " WHERE d.fax_id = ? ORDER BY d.seq",
            (fax_id,),
        )
        return [inbound_delivery_from_row(row) for row in rows]

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
