"""The sandbox's tables, and the columns later versions added to an older state directory."""

from __future__ import annotations

import sqlite3
from typing import Final

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS accounts (
    guid TEXT PRIMARY KEY,
    inbound_callback_url TEXT,
    outbound_callback_url TEXT,
    send_confirmation_emails INTEGER NOT NULL DEFAULT 0,
    include_pdfs_in_received_emails INTEGER NOT NULL DEFAULT 1,
    confirmed INTEGER NOT NULL DEFAULT 1,
    event_callback_url TEXT
);
CREATE TABLE IF NOT EXISTS lines (
    account_guid TEXT NOT NULL REFERENCES accounts(guid),
    number TEXT NOT NULL,
    bought_at REAL NOT NULL,
    PRIMARY KEY (account_guid, number)
);
CREATE TABLE IF NOT EXISTS line_users (
    number TEXT NOT NULL,
    user TEXT NOT NULL,
    PRIMARY KEY (number, user)
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
    removed_at REAL,
    deleted_at REAL,
    title TEXT,
    test_mode INTEGER NOT NULL DEFAULT 0
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

TRANSMISSION_COLUMNS: Final = (
    "seq, guid, account_guid, to_number, from_number, is_inbound, status, error_code, "
    "created_at, updated_at, pages, cover_to, cover_from, cover_message, fingerprint, plan, "
    "next_at, removed_at, deleted_at, title, test_mode"
)

# Columns added since the first state directories: (table, column, type).
_ADDED: Final = (
    ("transmissions", "removed_at", "REAL"),
    ("transmissions", "deleted_at", "REAL"),
    ("transmissions", "title", "TEXT"),
    ("transmissions", "test_mode", "INTEGER NOT NULL DEFAULT 0"),
    ("accounts", "event_callback_url", "TEXT"),
)


def create(db: sqlite3.Connection) -> None:
    """Create what is missing; an older state directory gets its new columns."""
    db.executescript(SCHEMA)
    for table, column, kind in _ADDED:
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
