"""What an instance sharing the store with others holds: its name, its leases renewed
while it lives, given up when it stops.

A claim (claims.py, outbox.py) is a lease until a moment. An instance renews the leases it
holds on work that must not change hands while it lives (the faxes it is sending, the
notifications it is delivering) well before they run out, and gives them all up on a
clean stop, so that the others need not wait for them. One that dies renews nothing: its
leases run out and the others take its work over.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from faxgate.domain.jobs import Job, JobState
from faxgate.store.db import Database
from faxgate.store.rows import (
    job_from_row,
    opt_time_from_db,
    placeholders,
    time_from_db,
    time_to_db,
)

# An instance not seen for this many leases is shown as gone: a heartbeat comes three
# times a lease, so one alive has missed nine in a row before it is called gone.
GONE_AFTER_LEASES: Final = 3
# A gone instance's row is kept this long (for `faxgate status`), then pruned.
KEEP_GONE: Final = timedelta(days=7)


def gone_after(lease: timedelta) -> timedelta:
    """How long an instance may go unseen before it is shown as gone."""
    return lease * GONE_AFTER_LEASES


@dataclass(frozen=True, slots=True)
class Holder:
    """An instance that holds work now, and what: for `faxgate status`."""

    owner: str
    sending: int  # faxes in `submitting`, their request perhaps on its way
    claimed: int  # queued faxes claimed, about to be sent
    notifications: int  # notifications being delivered


@dataclass(frozen=True, slots=True)
class Member:
    """An instance of the cluster, as its heartbeat wrote it, and the work it holds now.
    One holding work without a row of its own (a faxgate from before the table) has only
    its name."""

    owner: str
    alive: bool
    host: str | None = None
    pid: int | None = None
    version: str | None = None
    started_at: datetime | None = None
    last_seen: datetime | None = None
    stopped_at: datetime | None = None
    sending: int = 0
    claimed: int = 0
    notifications: int = 0

    @property
    def held_jobs(self) -> int:
        return self.sending + self.claimed


@dataclass(frozen=True, slots=True)
class Share:
    """One instance among those sharing a store: who it is, and how long its claims hold
    without word from it."""

    owner: str
    lease: timedelta
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    @property
    def renew_every(self) -> timedelta:
        """Renewals come three times a lease: one late or lost renewal loses nothing."""
        return self.lease / 3


def new_owner() -> str:
    """This instance's name in the leases: its host and process, and chance, so that a
    process started again with the same id is still another owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Sharing(Database):
    """The leases an instance holds: renewed, read, given up."""

    def renew_claims(self, owner: str, now: datetime, lease: timedelta) -> int:
        """Push back to `now + lease` the leases `owner` still holds on jobs in
        `submitting` (their request may be on its way) and on notifications not yet
        delivered. A lease that ran out is not renewed: another instance may have taken
        that work, or may be about to. Returns how many were renewed."""
        at, until = time_to_db(now), time_to_db(now + lease)
        with self._write() as conn:
            jobs = conn.execute(
                "UPDATE jobs SET lease_until = ?"
                " WHERE lease_owner = ? AND lease_until > ? AND state = ?",
                (until, owner, at, JobState.SUBMITTING.value),
            ).rowcount
            notes = conn.execute(
                "UPDATE outbox SET lease_until = ?"
                " WHERE lease_owner = ? AND lease_until > ? AND delivered_at IS NULL",
                (until, owner, at),
            ).rowcount
        return int(jobs) + int(notes)

    def jobs_held(self, owner: str, states: Iterable[JobState]) -> list[Job]:
        """The jobs in `states` whose lease `owner` holds (or held last, when it ran out
        and nobody took them since), oldest change first."""
        wanted = [state.value for state in states]
        if not wanted:
            return []
        rows = self._query(
            f"SELECT * FROM jobs WHERE lease_owner = ? AND state IN ({placeholders(len(wanted))})"  # noqa: S608
            " ORDER BY updated_at, id",
            (owner, *wanted),
        )
        return [job_from_row(row) for row in rows]

    def release_notifications(self, owner: str) -> int:
        """Give up `owner`'s leases on notifications (on a clean stop); how many."""
        with self._write() as conn:
            released = int(
                conn.execute(
                    "UPDATE outbox SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ? AND delivered_at IS NULL",
                    (owner,),
                ).rowcount
            )
            if released:
                self._announce(conn, "outbox")
            return released

    def holders(self, now: datetime) -> list[Holder]:
        """The instances holding live leases at `now`, and on what, by name. An instance
        alive but idle holds nothing, and is not listed."""
        at = time_to_db(now)
        found: dict[str, dict[str, int]] = {}
        for row in self._query(
            "SELECT lease_owner, state, count(*) AS n FROM jobs"
            " WHERE lease_until > ? AND state IN (?, ?) GROUP BY lease_owner, state",
            (at, JobState.SUBMITTING.value, JobState.QUEUED.value),
        ):
            found.setdefault(row["lease_owner"], {})[row["state"]] = int(row["n"])
        for row in self._query(
            "SELECT lease_owner, count(*) AS n FROM outbox"
            " WHERE lease_until > ? AND delivered_at IS NULL GROUP BY lease_owner",
            (at,),
        ):
            found.setdefault(row["lease_owner"], {})["outbox"] = int(row["n"])
        return [
            Holder(
                owner,
                sending=held.get(JobState.SUBMITTING.value, 0),
                claimed=held.get(JobState.QUEUED.value, 0),
                notifications=held.get("outbox", 0),
            )
            for owner, held in sorted(found.items())
        ]

    # ------------------------------------------------------------------ the cluster

    def instance_seen(
        self,
        share: Share,
        *,
        version: str,
        started_at: datetime,
        now: datetime,
    ) -> None:
        """The heartbeat's word that `share`'s instance lives at `now`; rows of instances
        gone longer than KEEP_GONE are pruned with it."""
        at = time_to_db(now)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO instances (id, host, pid, version, started_at, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET last_seen = excluded.last_seen, stopped_at = NULL",
                (share.owner, share.host, share.pid, version, time_to_db(started_at), at),
            )
            conn.execute(
                "DELETE FROM instances WHERE last_seen < ?", (time_to_db(now - KEEP_GONE),)
            )

    def instance_stopped(self, owner: str, now: datetime) -> None:
        """A clean stop: shown as gone at once, not after a few leases."""
        at = time_to_db(now)
        with self._write() as conn:
            conn.execute(
                "UPDATE instances SET last_seen = ?, stopped_at = ? WHERE id = ?",
                (at, at, owner),
            )

    def cluster(self, now: datetime, gone_after: timedelta) -> list[Member]:
        """Every instance the store knows: alive (seen within `gone_after`, not stopped)
        or gone, with the work each holds at `now`; the alive first, oldest first."""
        holding = {held.owner: held for held in self.holders(now)}
        since = now - gone_after
        members = []
        for row in self._query("SELECT * FROM instances ORDER BY started_at, id"):
            held = holding.pop(row["id"], None)
            last_seen = time_from_db(row["last_seen"])
            stopped_at = opt_time_from_db(row["stopped_at"])
            members.append(
                Member(
                    row["id"],
                    alive=stopped_at is None and last_seen >= since,
                    host=row["host"],
                    pid=int(row["pid"]),
                    version=row["version"],
                    started_at=time_from_db(row["started_at"]),
                    last_seen=last_seen,
                    stopped_at=stopped_at,
                    sending=0 if held is None else held.sending,
                    claimed=0 if held is None else held.claimed,
                    notifications=0 if held is None else held.notifications,
                )
            )
        # Live leases are word enough that their owner lives, row or none.
        members += [
            Member(
                held.owner,
                alive=True,
                sending=held.sending,
                claimed=held.claimed,
                notifications=held.notifications,
            )
            for held in holding.values()
        ]
        return sorted(members, key=lambda member: not member.alive)
