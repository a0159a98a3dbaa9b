"""Where SQLite's SQL and PostgreSQL's differ, in one place.

The table families write their SQL once, in SQLite's words with `?` placeholders, and ask
their dialect for the few pieces that differ: a row locked for the rest of the transaction,
an insert that skips a row already there, a JSON field, a LIMIT that limits nothing. The
PostgreSQL connection turns `?` into its own placeholders (see `to_pyformat`).

What differs underneath, and stays out of the families' SQL:
- transactions: SQLite takes the one write lock at BEGIN IMMEDIATE; PostgreSQL locks the
  rows a change reads (`lock_row`) and leaves the others to other instances;
- times: SQLite keeps fixed-width UTC text; PostgreSQL keeps timestamptz. Both take that
  text as a parameter (PostgreSQL casts it) and rows.time_from_db reads either;
- ids: SQLite's implicit rowid; PostgreSQL tables that order by it have an identity
  column of that name, so `ORDER BY created_at, rowid` means the same on both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol


class Row(Protocol):
    """A row read by its columns' names: sqlite3.Row, or psycopg's dict_row."""

    def __getitem__(self, key: str, /) -> Any: ...


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the table families use of a connection: sqlite3's, or PostgreSQL's wrapped."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    # Appended to the SELECT of a row the transaction goes on to change.
    lock_row: str
    # Appended to a SELECT ... FOR UPDATE that passes over rows another transaction holds.
    skip_locked: str
    # Appended to an INSERT of a new row: when another writer took its key meanwhile (an
    # id, an inbound fax's GUID), insert nothing and return no row.
    skip_taken_id: str
    # Tells other instances, when the transaction commits, that there is work (channel,
    # payload); nothing on SQLite, where one instance does all the work.
    announce: str
    # Taken first in a transaction that every instance must run in turn (one parameter:
    # the lock's key); nothing on SQLite, whose write lock already does it.
    one_at_a_time: str
    # The larger of two values (SQLite's two-argument max).
    greatest: str
    # A LIMIT that takes every row (SQLite needs one before an OFFSET).
    no_limit: str
    # A JSON text column's field as text; the field's name is the one `?` parameter.
    json_field_template: str
    # Inserting a row whose key is taken does nothing.
    ignore_prefix: str
    ignore_suffix: str
    # A time column's UTC hour as text, "2024-05-01T10" (the status page's chart).
    hour_template: str = "substr({column}, 1, 13)"
    # Taken by a transaction that counts on a row being there, or that removes rows, one
    # parameter: the lock's key. Many may share it; `exclusive` waits for all of them and
    # holds them off. Nothing on SQLite, whose write lock already does it.
    shared_lock: str = ""
    exclusive_lock: str = ""

    def hour(self, column: str) -> str:
        return self.hour_template.format(column=column)

    def json_field(self, column: str) -> str:
        return self.json_field_template.format(column=column)

    def insert_ignoring(self, table: str, columns: Sequence[str]) -> str:
        """INSERT of one row that does nothing when its key is already there."""
        names = ", ".join(columns)
        values = ", ".join("?" * len(columns))
        return f"{self.ignore_prefix} INTO {table} ({names}) VALUES ({values}){self.ignore_suffix}"


SQLITE: Final = Dialect(
    name="sqlite",
    lock_row="",  # BEGIN IMMEDIATE already holds the whole file's write lock
    skip_locked="",  # and no other writer holds any row meanwhile
    skip_taken_id="",  # under the write lock, the id checked free stays free
    announce="",
    one_at_a_time="",
    greatest="max",
    no_limit="LIMIT -1",
    json_field_template="json_extract({column}, '$.' || ?)",
    ignore_prefix="INSERT OR IGNORE",
    ignore_suffix="",
)

POSTGRES: Final = Dialect(
    name="postgresql",
    lock_row=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    skip_taken_id=" ON CONFLICT DO NOTHING",
    announce="SELECT pg_notify(?, ?)",
    one_at_a_time="SELECT pg_advisory_xact_lock(?)",
    greatest="GREATEST",
    no_limit="LIMIT ALL",
    # json, not jsonb: jsonb refuses a \u0000 anywhere in the text, json only where read.
    json_field_template="(({column})::json ->> ?)",
    ignore_prefix="INSERT",
    ignore_suffix=" ON CONFLICT DO NOTHING",
    # timestamptz, not text: substr() does not take it.
    hour_template="""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24')""",
    shared_lock="SELECT pg_advisory_xact_lock_shared(?)",
    exclusive_lock="SELECT pg_advisory_xact_lock(?)",
)


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal `%` doubled).

    The store's SQL never puts a `?` inside a string literal, so every `?` is a parameter.
    """
    return sql.replace("%", "%%").replace("?", "%s")
