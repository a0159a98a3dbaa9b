"""The IMAP intake's ledger: the messages taken from a mailbox, each recorded in
`imap_taken` (by the mailbox, its UIDVALIDITY and the message's UID) in the same
transaction as its jobs or its refusal's reply.

Several instances on one PostgreSQL store may watch the same mailbox, list the same
message and take it at once. The primary key decides: the row is inserted only where none
is, and a batch that finds one of its rows taken is rolled back whole (its jobs, its
replies, its documents' bytes) and reported as `TakenElsewhere`; the intake then treats
those messages as taken (faxgate.intake.imap.watcher).

Why a lock per mailbox as well (on PostgreSQL; SQLite's write lock already does it): two
batches of the same mailbox insert their rows (jobs, documents' bytes by digest,
imap_taken) in orders that can cross, and PostgreSQL would then break the deadlock by
failing one of them, a failure to store. Taken first, the lock makes one instance at a
time write a given mailbox's batch: the second finds the first's rows committed, never
waits on them half-way, and loses at once. It is a transaction's lock
(pg_advisory_xact_lock): it goes with the commit or with a connection that dies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from faxgate.domain.jobs import Job
from faxgate.store.dialect import Connection
from faxgate.store.jobs import JobTables
from faxgate.store.outbox import insert_notification
from faxgate.store.rows import placeholders
from faxgate.store.values import NewJob, NewNotification

_READ_AT_ONCE: Final = 500  # UIDs per query (SQLite's limit on parameters is far above)


@dataclass(frozen=True, slots=True)
class TakenMessage:
    """A message's row in imap_taken (its mailbox's aside): where it was, how it ended."""

    uidvalidity: int
    uid: int
    message_id: str | None
    outcome: str  # "processed" or "refused"


class TakenElsewhere(Exception):
    """Another taker recorded some of the batch's messages first: nothing of the batch was
    kept. `uids`: those it had taken."""

    def __init__(self, mailbox: str, uids: Sequence[int]) -> None:
        super().__init__(
            f"messages of {mailbox} taken by another instance first: uids "
            + ",".join(str(uid) for uid in uids)
        )
        self.mailbox = mailbox
        self.uids = list(uids)


def mailbox_lock(mailbox: str, what: str) -> int:
    """The key of a mailbox's lock for `what` ("take", "move"): a signed 64-bit number."""
    digest = hashlib.sha256(f"faxgate imap {what} {mailbox}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class ImapLedger(JobTables):
    """The imap_taken table, and the batches recorded in it with their jobs."""

    def imap_outcomes(
        self, mailbox: str, uidvalidity: int, uids: Iterable[int]
    ) -> dict[int, tuple[str, str | None]]:
        """Of `uids`, those taken already: their outcome and Message-ID."""
        wanted = sorted(set(uids))
        found: dict[int, tuple[str, str | None]] = {}
        for at in range(0, len(wanted), _READ_AT_ONCE):
            part = wanted[at : at + _READ_AT_ONCE]
            rows = self._query(
                "SELECT uid, outcome, message_id FROM imap_taken"  # noqa: S608
                f" WHERE mailbox = ? AND uidvalidity = ? AND uid IN ({placeholders(len(part))})",
                (mailbox, uidvalidity, *part),
            )
            found.update(
                (int(row["uid"]), (str(row["outcome"]), row["message_id"])) for row in rows
            )
        return found

    def imap_taken_by_message_id(self, mailbox: str, message_id: str) -> str | None:
        """The outcome of a message taken under any UIDVALIDITY (the server may have
        renumbered the mailbox since), found by its Message-ID; None when not taken."""
        rows = self._query(
            "SELECT outcome FROM imap_taken WHERE mailbox = ? AND message_id = ? LIMIT 1",
            (mailbox, message_id),
        )
        return str(rows[0]["outcome"]) if rows else None

    def take_imap_messages(
        self,
        mailbox: str,
        taken: Sequence[TakenMessage],
        jobs: Sequence[NewJob],
        replies: Sequence[NewNotification] = (),
        *,
        now: datetime | None = None,
    ) -> list[Job]:
        """Record `taken` (messages of `mailbox`) with `jobs` and `replies` (the outbox
        rows of refusals), all in one transaction: the jobs created, in order. Raises
        TakenElsewhere, having kept nothing, when another taker recorded one first."""
        now = self._clock() if now is None else now
        at = self._now(now)
        insert = (
            self._dialect.insert_ignoring(
                "imap_taken",
                ("mailbox", "uidvalidity", "uid", "message_id", "outcome", "taken_at"),
            )
            + " RETURNING uid"
        )

        def record(conn: Connection) -> None:
            if self._dialect.one_at_a_time:  # one batch of this mailbox at a time; see above
                conn.execute(self._dialect.one_at_a_time, (mailbox_lock(mailbox, "take"),))
            lost = [
                message.uid
                for message in taken
                if conn.execute(
                    insert,
                    (
                        mailbox,
                        message.uidvalidity,
                        message.uid,
                        message.message_id,
                        message.outcome,
                        at,
                    ),
                ).fetchone()
                is None
            ]
            if lost:
                raise TakenElsewhere(mailbox, lost)
            for reply in replies:
                insert_notification(conn, at, reply)
            if replies:
                self._announce(conn, "outbox")

        return self.create_jobs(jobs, now=now, also=record)

    @contextmanager
    def imap_moves_in_turn(self, mailbox: str) -> Iterator[None]:
        """One instance at a time moves messages out of `mailbox` while the block runs
        (PostgreSQL: a transaction holds the mailbox's lock; SQLite: one instance only).

        Two instances moving the same message at once (one that took it, one that found
        it taken) could each copy it into the folder: a server's move is a copy and an
        expunge (COPY, then EXPUNGE; Dovecot's MOVE too, when two sessions move one
        message at the same moment). In turn, the second finds the message gone from the
        mailbox (or its copy in the folder) and copies nothing."""
        if not self._dialect.one_at_a_time:
            yield
            return
        with self._backend.transaction() as conn:  # the pool's; not the store's writer
            conn.execute(self._dialect.one_at_a_time, (mailbox_lock(mailbox, "move"),))
            yield
