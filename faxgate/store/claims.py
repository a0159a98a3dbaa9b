"""Claims: leases that let several instances share the due work of one database.

A claim is committed before it returns, so before any slow IO; another instance claiming
at the same moment passes over the rows being claimed (SKIP LOCKED on PostgreSQL; on
SQLite the file's write lock makes claims one at a time) and takes none of them until
the lease runs out. The outbox's claims (outbox.py) are made the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from faxgate.domain.jobs import ACTIVE_STATES, Job, JobState
from faxgate.store.db import Database
from faxgate.store.dialect import Connection, Dialect
from faxgate.store.rows import job_from_row, placeholders, time_from_db, time_to_db
from faxgate.store.values import Lease

# pg_advisory_xact_lock's key for claims under the provider's limit: "fxclaim" in ASCII.
CLAIMS_LOCK: Final = 0x6678636C61696D


class Due(NamedTuple):
    """Which rows are due, in the store's own SQL (never a caller's text), and in what
    order they are taken."""

    where: str
    params: Sequence[object]
    order: str


@dataclass(frozen=True, slots=True)
class Claim:
    """Who claims, from when, for how long, and how many rows at the most."""

    owner: str
    now: datetime
    lease: timedelta
    limit: int


def lease_rows(
    conn: Connection,
    dialect: Dialect,
    table: str,
    due: Due,
    claim: Claim,
    *,
    own_again: bool = True,
) -> list[Any]:
    """Lease to the claim's owner the first rows of `table` that are `due` and no other
    owner holds; return them in due order. `own_again`: a lease the owner already holds
    is taken again."""
    where, params, order = due
    at, until = time_to_db(claim.now), time_to_db(claim.now + claim.lease)
    free = "lease_until IS NULL OR lease_until <= ?" + (" OR lease_owner = ?" if own_again else "")
    free_params = (at, claim.owner) if own_again else (at,)
    select = (
        f"SELECT id FROM {table} WHERE {where} AND ({free})"  # noqa: S608
        f" ORDER BY {order} LIMIT ?{dialect.skip_locked}"
    )
    found = conn.execute(select, (*params, *free_params, claim.limit)).fetchall()
    claimed = [row["id"] for row in found]
    if not claimed:
        return []
    marks = placeholders(len(claimed))
    conn.execute(
        f"UPDATE {table} SET lease_owner = ?, lease_until = ? WHERE id IN ({marks})",  # noqa: S608
        (claim.owner, until, *claimed),
    )
    rows: list[Any] = conn.execute(
        f"SELECT * FROM {table} WHERE id IN ({marks}) ORDER BY {order}",  # noqa: S608
        claimed,
    ).fetchall()
    return rows


# Due jobs looked at in queue order for the heads of their lines, beyond the room asked
# for: with faxes to many numbers most are heads, and the first few hundred hold them.
_WINDOW_SLACK: Final = 64


def _due_jobs(at: str, per_number: int | None = 1, *, window: int | None = None) -> Due:
    """The due queued jobs: what a dispatcher takes, in the order it takes them (higher
    priority first, then by turn: the senders take turns, see JobTables._turn, and the
    oldest go first). The one definition of "due", for the claims of
    several instances and the single dispatcher's read alike (`due_plans`).

    `per_number`: at most that many faxes in flight to one number (a fax machine answers
    one call at a time). Each number's queued jobs form a line, in priority then arrival
    order; a job is due only while it is within the first `per_number` of its line minus
    the calls in flight to that number. A job that waits (a busy line called again later,
    a closed window) keeps its place: later faxes to the number wait behind it. None: no
    limit per number.

    Two ways to the same jobs, neither following the length of the queue:
    - `window` N: the heads among the first N due jobs in queue order, each found by a
      probe of its line's head (jobs_by_line). Exact for the first heads, as far as the
      window holds them: enough when faxes go to many numbers;
    - no window: every number with queued jobs walked one index probe at a time, each
      line read only at its head. Complete; its cost follows the numbers queued for,
      small when a backlog goes to few numbers.
    """
    queued = JobState.QUEUED.value
    due = "state = ? AND (not_before IS NULL OR not_before <= ?)"
    order = "priority DESC, turn_at, created_at, rowid"
    if per_number is None:
        return Due(due, (queued, at), order)
    active = [state.value for state in ACTIVE_STATES]
    in_flight = placeholders(len(active))
    # The job at `place` in the line of `number` (a column of the enclosing query) when
    # fewer than per_number - place calls to the number are in flight.
    head = (
        "(SELECT h.id FROM jobs h WHERE h.state = ? AND h.to_number = {number}"
        " ORDER BY h.priority DESC, h.created_at, h.rowid LIMIT 1 OFFSET ?)"
    )
    room = f"(SELECT count(*) FROM jobs f WHERE f.to_number = {{number}} AND f.state IN ({in_flight})) < ?"  # noqa: S608, E501
    places = range(per_number)
    head_params = [
        value for place in places for value in (queued, place, *active, per_number - place)
    ]
    if window is not None:
        number = "c.to_number"
        fits = " OR ".join(
            f"(c.id = {head.format(number=number)} AND {room.format(number=number)})"
            for _ in places
        )
        heads = (
            f"SELECT c.id FROM (SELECT id, to_number FROM jobs WHERE {due}"  # noqa: S608
            f" ORDER BY {order} LIMIT ?) c WHERE {fits}"
        )
        params: tuple[object, ...] = (queued, at, window, *head_params)
    else:
        number = "lines.number"
        heads = (  # noqa: S608
            "WITH RECURSIVE lines(number) AS ("
            " SELECT (SELECT to_number FROM jobs WHERE state = ? ORDER BY to_number LIMIT 1)"
            " UNION ALL"
            " SELECT (SELECT j.to_number FROM jobs j WHERE j.state = ?"
            " AND j.to_number > lines.number ORDER BY j.to_number LIMIT 1)"
            " FROM lines WHERE lines.number IS NOT NULL) "
        ) + " UNION ALL ".join(
            f"SELECT {head.format(number=number)} FROM lines"  # noqa: S608
            f" WHERE lines.number IS NOT NULL AND {room.format(number=number)}"
            for _ in places
        )
        params = (queued, queued, *head_params)
    # The heads are found first and their rows read by id; `state || ''` keeps SQLite's
    # planner from walking every queued job on the state index instead.
    return Due(
        f"id IN ({heads}) AND state || '' = ? AND {due.partition(' AND ')[2]}",
        (*params, queued, at),
        order,
    )


def due_plans(at: str, per_number: int | None, limit: int) -> tuple[Due, Due | None]:
    """How to read the due jobs: a first plan, and the one to run instead when the first
    found fewer than `limit` (None: the first is complete)."""
    if per_number is None:
        return _due_jobs(at, None), None
    return _due_jobs(at, per_number, window=limit + _WINDOW_SLACK), _due_jobs(at, per_number)


class JobClaims(Database):
    """The jobs' leases: due jobs, due polls and orphans claimed, released, read."""

    def claim_due_jobs(
        self,
        now: datetime,
        limit: int,
        *,
        owner: str,
        lease: timedelta,
        max_in_flight: int | None = None,
        per_number: int | None = 1,
    ) -> list[Job]:
        """Take up to `limit` due queued jobs for `owner` until `now + lease`, in the order
        `_due_jobs` gives (at most `per_number` in flight to one number).

        Committed before it returns, so before any slow IO: another instance claiming at
        the same moment passes over these rows (SKIP LOCKED) instead of waiting, and takes
        none of them until the lease runs out. A lease its owner holds is taken again (a
        job queued again after a busy line). A job leaves `queued` only by a transition
        that expects `queued`, so even an expired lease never sends a job twice.

        `max_in_flight`: the provider's limit, counted across every instance: the jobs at
        the provider (submitting, submitted, transmitting) and those other owners hold
        claimed, plus this claim, never exceed it. Such claims are made one at a time.
        """
        claim = Claim(owner, now, lease, limit)
        plans = due_plans(time_to_db(now), per_number, limit)
        if max_in_flight is not None:
            return self._claim_within(claim, plans, max_in_flight)
        return self._claim_due(plans, claim)

    def claim_due_polls(
        self, now: datetime, limit: int, *, owner: str, lease: timedelta
    ) -> list[Job]:
        """Take up to `limit` jobs whose next poll is due, most overdue first, as
        `claim_due_jobs` takes due jobs: two instances never ask for one job at once."""
        states = [s.value for s in (*ACTIVE_STATES, JobState.UNCERTAIN)]
        due = Due(
            f"next_poll_at <= ? AND state IN ({placeholders(len(states))})",
            (time_to_db(now), *states),
            "next_poll_at, id",
        )
        return self._claim(due, Claim(owner, now, lease, limit))

    def claim_orphans(
        self, now: datetime, limit: int, *, owner: str, lease: timedelta
    ) -> list[Job]:
        """Take up to `limit` jobs left in `submitting` by an instance whose lease ran out
        (it died, or stalled, with its request perhaps gone): to be reconciled against the
        provider's records, never sent again blindly. Its owner's own leases are left to
        it: its request may still be on its way."""
        due = Due("state = ?", (JobState.SUBMITTING.value,), "updated_at, id")
        return self._claim(due, Claim(owner, now, lease, limit), own_again=False)

    def _claim_within(
        self, claim: Claim, plans: tuple[Due, Due | None], max_in_flight: int
    ) -> list[Job]:
        at = time_to_db(claim.now)
        active = [state.value for state in ACTIVE_STATES]
        with self._write() as conn:
            if self._dialect.one_at_a_time:  # every instance's capped claims, in turn
                conn.execute(self._dialect.one_at_a_time, (CLAIMS_LOCK,))
            row = conn.execute(
                "SELECT count(*) AS n FROM jobs"  # noqa: S608
                f" WHERE state IN ({placeholders(len(active))})"
                " OR (state = ? AND lease_until > ? AND lease_owner <> ?)",
                (*active, JobState.QUEUED.value, at, claim.owner),
            ).fetchone()
            room = max(0, max_in_flight - int(row["n"]))
            if room == 0:
                return []
            within = replace(claim, limit=min(claim.limit, room))
            rows = self._lease_due(conn, plans, within)
        return [job_from_row(row) for row in rows]

    def _claim_due(self, plans: tuple[Due, Due | None], claim: Claim) -> list[Job]:
        with self._write() as conn:
            rows = self._lease_due(conn, plans, claim)
        return [job_from_row(row) for row in rows]

    def _lease_due(
        self, conn: Connection, plans: tuple[Due, Due | None], claim: Claim
    ) -> list[Any]:
        """Lease by the first plan; when it fell short, by the complete one, which takes
        those again (their owner's own leases) with the rest, in due order."""
        first, complete = plans
        rows = lease_rows(conn, self._dialect, "jobs", first, claim)
        if complete is not None and len(rows) < claim.limit:
            rows = lease_rows(conn, self._dialect, "jobs", complete, claim)
        return rows

    def _claim(self, due: Due, claim: Claim, *, own_again: bool = True) -> list[Job]:
        """Lease jobs as `lease_rows` does, in a transaction of their own."""
        with self._write() as conn:
            rows = lease_rows(conn, self._dialect, "jobs", due, claim, own_again=own_again)
        return [job_from_row(row) for row in rows]

    def release_claims(self, owner: str, job_ids: Iterable[str] | None = None) -> int:
        """Give up `owner`'s leases (those of `job_ids`, or all): on a clean stop, so that
        other instances need not wait for them to run out. Returns how many."""
        wanted = None if job_ids is None else list(job_ids)
        if wanted == []:
            return 0
        sql = "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?"
        params: list[object] = [owner]
        if wanted is not None:
            sql += f" AND id IN ({placeholders(len(wanted))})"
            params += wanted
        with self._write() as conn:
            released = int(conn.execute(sql, params).rowcount)
            if released:
                self._announce(conn, "jobs")  # others need not wait for the leases to run out
            return released

    def lease(self, job_id: str) -> Lease | None:
        """Who holds the job's lease, and until when (None: nobody ever claimed it)."""
        rows = self._query("SELECT lease_owner, lease_until FROM jobs WHERE id = ?", (job_id,))
        if not rows or rows[0]["lease_owner"] is None:
            return None
        return Lease(owner=rows[0]["lease_owner"], until=time_from_db(rows[0]["lease_until"]))
