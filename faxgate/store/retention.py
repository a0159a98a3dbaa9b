"""Document retention in the store: which documents are due, marking them removed, and
the pass that removes their files ([retention] documents; the rule: domain/retention.py).

A pass runs in two steps. First, in one transaction per batch, the due documents' rows
are marked removed (`removed_at`) and, on PostgreSQL, the bytes no unremoved row names
any more are deleted (under an advisory lock that writes naming kept bytes take shared).
Only then, each instance looks through its own spool (and its folders) and deletes the
files that rows marked removed name and no unremoved row does: its own files, the copies
(`db-<sha256>`) it wrote from the database, a mailed job's .eml; and the files of rows
removed within RECHECK wherever they are. A crash between the two leaves files whose
rows say removed: the next pass deletes them. A row is never
left pointing at nothing without saying so, and a file no row names (a message being
taken in) is never touched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from faxgate.domain.jobs import JobState
from faxgate.domain.retention import (
    REMOVABLE_STATES,
    InboundFacts,
    JobFacts,
    cutoff,
    inbound_document_may_go,
    job_documents_may_go,
)
from faxgate.durable import fsync_dir
from faxgate.store.dialect import Connection
from faxgate.store.document_bytes import BYTES_LOCK, CACHED_PREFIX, DocumentBytes
from faxgate.store.rows import placeholders, time_from_db, time_to_db

log = logging.getLogger("faxgate.retention")

# How many jobs (and inbound faxes) one transaction marks; a pass takes batches until
# none is left.
BATCH: Final = 200
# How many spool files one look-up asks about.
LOOKUP: Final = 400
# Documents removed this recently have their files looked for wherever their paths say,
# besides the spool's own look: a crash between marking and deleting is finished there too.
RECHECK: Final = timedelta(days=7)


@dataclass(slots=True)
class Due:
    """Documents due for removal (or removed by a pass): how many, how large."""

    jobs: list[str] = field(default_factory=list)
    inbound: list[str] = field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    digests: set[str] = field(default_factory=set)

    def count(self, size: int, sha256: str | None) -> None:
        self.documents += 1
        self.bytes += size
        if sha256:
            self.digests.add(sha256)

    def add(self, other: Due) -> None:
        self.jobs += other.jobs
        self.inbound += other.inbound
        self.documents += other.documents
        self.bytes += other.bytes
        self.digests |= other.digests


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What one pass removed (or, dry, would remove)."""

    marked: Due  # rows marked removed now (due now, when dry)
    files: int = 0  # files deleted from this host's spool
    file_bytes: int = 0
    dry_run: bool = False

    @property
    def anything(self) -> bool:
        return bool(self.marked.documents or self.files)


class Retention(DocumentBytes):
    """Marking documents removed, and what this host's spool still holds of them."""

    # ------------------------------------------------------------------ the rows

    def documents_due(
        self, keep: timedelta | None, *, now: datetime | None = None, limit: int = BATCH
    ) -> Due:
        """The documents a pass would remove now (at most `limit` jobs and inbound faxes
        each), without changing anything."""
        if keep is None:
            return Due()
        moment = self._clock() if now is None else now
        reads = _Reads(self)
        jobs = self._due_jobs(reads, moment, keep, limit, lock="")
        faxes = self._due_inbound(reads, moment, keep, limit, lock="")
        return self._sized(reads, jobs, faxes)

    def mark_documents_removed(
        self, keep: timedelta | None, *, now: datetime | None = None, limit: int = BATCH
    ) -> Due:
        """Mark one batch of due documents removed (at most `limit` jobs and inbound faxes)
        and, on PostgreSQL, delete the bytes no unremoved row names. Idempotent; several
        instances at once each mark other rows (the rows one holds, another skips)."""
        if keep is None:
            return Due()
        moment = self._clock() if now is None else now
        at = time_to_db(moment)
        with self._write() as conn:
            if self._dialect.exclusive_lock:
                conn.execute(self._dialect.exclusive_lock, (BYTES_LOCK,))
            lock = self._dialect.skip_locked
            jobs = self._due_jobs(conn, moment, keep, limit, lock=lock)
            faxes = self._due_inbound(conn, moment, keep, limit, lock=lock)
            due = self._sized(conn, jobs, faxes)
            if jobs:
                conn.execute(
                    f"UPDATE documents SET removed_at = ? WHERE removed_at IS NULL"  # noqa: S608
                    f" AND job_id IN ({placeholders(len(jobs))})",
                    (at, *jobs),
                )
            if faxes:
                conn.execute(
                    f"UPDATE inbound_faxes SET removed_at = ? WHERE removed_at IS NULL"  # noqa: S608
                    f" AND id IN ({placeholders(len(faxes))})",
                    (at, *faxes),
                )
            if due.digests and self.keeps_document_bytes:
                self._delete_unnamed_bytes(conn, sorted(due.digests))
        return due

    def _due_jobs(
        self, conn: Connection, now: datetime, keep: timedelta, limit: int, *, lock: str
    ) -> list[str]:
        states = sorted(REMOVABLE_STATES)
        rows = conn.execute(
            "SELECT j.id, j.state, j.finished_at FROM jobs AS j"  # noqa: S608
            f" WHERE j.state IN ({placeholders(len(states))}) AND j.finished_at < ?"
            " AND EXISTS (SELECT 1 FROM documents AS d"
            "  WHERE d.job_id = j.id AND d.removed_at IS NULL)"
            " AND NOT EXISTS (SELECT 1 FROM outbox AS o"
            "  WHERE o.job_id = j.id AND o.delivered_at IS NULL)"
            f" ORDER BY j.finished_at LIMIT ?{lock}",
            (*states, time_to_db(cutoff(now, keep)), limit),
        ).fetchall()
        # The query asks what the rule says; the rule has the last word.
        return [
            row["id"]
            for row in rows
            if job_documents_may_go(
                JobFacts(JobState(row["state"]), time_from_db(row["finished_at"]), 0), now, keep
            )
        ]

    def _due_inbound(
        self, conn: Connection, now: datetime, keep: timedelta, limit: int, *, lock: str
    ) -> list[str]:
        rows = conn.execute(
            "SELECT f.id, f.received_at FROM inbound_faxes AS f"  # noqa: S608
            " WHERE f.removed_at IS NULL AND f.document_path IS NOT NULL"
            " AND f.received_at < ?"
            " AND NOT EXISTS (SELECT 1 FROM inbound_deliveries AS d"
            "  WHERE d.fax_id = f.id AND d.delivered_at IS NULL)"
            f" ORDER BY f.received_at LIMIT ?{lock}",
            (time_to_db(cutoff(now, keep)), limit),
        ).fetchall()
        return [
            row["id"]
            for row in rows
            if inbound_document_may_go(InboundFacts(time_from_db(row["received_at"]), 0), now, keep)
        ]

    @staticmethod
    def _sized(conn: Connection, jobs: Sequence[str], faxes: Sequence[str]) -> Due:
        """How many documents the jobs and faxes hold, how large, their digests (asked
        a chunk at a time: a dry run may name more than one query takes)."""
        due = Due(jobs=list(jobs), inbound=list(faxes))
        for chunk in _chunks(jobs):
            for row in conn.execute(
                "SELECT size, sha256 FROM documents WHERE removed_at IS NULL"  # noqa: S608
                f" AND job_id IN ({placeholders(len(chunk))})",
                tuple(chunk),
            ).fetchall():
                due.count(int(row["size"]), row["sha256"])
        for chunk in _chunks(faxes):
            for row in conn.execute(
                "SELECT document_size, document_sha256 FROM inbound_faxes"  # noqa: S608
                f" WHERE id IN ({placeholders(len(chunk))})",
                tuple(chunk),
            ).fetchall():
                due.count(int(row["document_size"] or 0), row["document_sha256"])
        return due

    @staticmethod
    def _delete_unnamed_bytes(conn: Connection, digests: Sequence[str]) -> None:
        """Delete the bytes of these digests that no unremoved document or inbound fax
        names (under the exclusive bytes lock: no writer is naming them meanwhile)."""
        conn.execute(
            "DELETE FROM document_bytes AS b"  # noqa: S608
            f" WHERE b.sha256 IN ({placeholders(len(digests))})"
            " AND NOT EXISTS (SELECT 1 FROM documents AS d"
            "  WHERE d.sha256 = b.sha256 AND d.removed_at IS NULL)"
            " AND NOT EXISTS (SELECT 1 FROM inbound_faxes AS f"
            "  WHERE f.document_sha256 = b.sha256 AND f.removed_at IS NULL)",
            tuple(digests),
        )

    # ------------------------------------------------------------------ the files

    def removed_paths(self, paths: Sequence[str]) -> set[str]:
        """Of these files' paths, those rows marked removed name and no other row does."""
        return self._only_removed("path", "document_path", paths)

    def removed_digests(self, digests: Sequence[str]) -> set[str]:
        """Of these digests, those rows marked removed name and no other row does."""
        return self._only_removed("sha256", "document_sha256", digests)

    def _only_removed(self, job_column: str, fax_column: str, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        marks = placeholders(len(keys))
        rows = self._query(
            f"SELECT {job_column} AS named, removed_at FROM documents"  # noqa: S608
            f" WHERE {job_column} IN ({marks})"
            f" UNION ALL SELECT {fax_column} AS named, removed_at FROM inbound_faxes"
            f" WHERE {fax_column} IN ({marks})",
            (*keys, *keys),
        )
        return _only_removed((row["named"], row["removed_at"]) for row in rows)

    def clock_now(self) -> datetime:
        return self._clock()

    def recently_removed_paths(self, since: datetime) -> list[str]:
        """The paths of the documents removed since `since`."""
        at = time_to_db(since)
        rows = self._query(
            "SELECT path FROM documents WHERE removed_at >= ?"
            " UNION SELECT document_path AS path FROM inbound_faxes"
            " WHERE removed_at >= ? AND document_path IS NOT NULL",
            (at, at),
        )
        return [row["path"] for row in rows]

    def removed_mail(self, paths: Sequence[str]) -> set[str]:
        """Of these .eml paths, those that only jobs whose documents were all removed
        name (a message to several numbers is kept while one of its jobs keeps its)."""
        if not paths:
            return set()
        eml = self._dialect.json_field("j.intake_ref")
        rows = self._query(
            f"SELECT {eml} AS eml, EXISTS (SELECT 1 FROM documents AS d"  # noqa: S608
            "  WHERE d.job_id = j.id AND d.removed_at IS NULL) AS kept,"
            " EXISTS (SELECT 1 FROM documents AS d WHERE d.job_id = j.id) AS had"
            f" FROM jobs AS j WHERE j.intake = 'smtp' AND {eml} IN ({placeholders(len(paths))})",
            ("eml", "eml", *paths),
        )
        return _only_removed(
            (row["eml"], None if row["kept"] or not row["had"] else "removed") for row in rows
        )


class _Reads:
    """The store's reads in a connection's shape: a dry run asks what a pass would."""

    def __init__(self, db: DocumentBytes) -> None:
        self._db = db

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Rows:
        return _Rows(self._db._query(sql, parameters))


@dataclass(frozen=True, slots=True)
class _Rows:
    rows: list[Any]

    def fetchall(self) -> list[Any]:
        return self.rows


def _only_removed(named: Iterable[tuple[str, object]]) -> set[str]:
    removed: set[str] = set()
    kept: set[str] = set()
    for key, removed_at in named:
        (kept if removed_at is None else removed).add(key)
    return removed - kept


def purge(
    store: Retention,
    spool_root: Path,
    keep: timedelta | None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    batch: int = BATCH,
) -> PurgeReport:
    """One pass: the due documents marked removed, then this host's files of every
    document marked removed deleted. Dry: what is due now, nothing changed."""
    if dry_run:
        due = Due()
        # Every due row, batch after batch, read without marking: counted once each.
        due.add(store.documents_due(keep, now=now, limit=2**31 - 1))
        return PurgeReport(marked=due, dry_run=True)
    marked = Due()
    while True:
        step = store.mark_documents_removed(keep, now=now, limit=batch)
        marked.add(step)
        if len(step.jobs) < batch and len(step.inbound) < batch:
            break
    files, file_bytes = delete_removed_files(store, spool_root, now=now)
    report = PurgeReport(marked=marked, files=files, file_bytes=file_bytes)
    if report.anything:
        log.info(
            "documents removed jobs=%d inbound=%d documents=%d bytes=%d files=%d file_bytes=%d",
            len(marked.jobs),
            len(marked.inbound),
            marked.documents,
            marked.bytes,
            files,
            file_bytes,
        )
    return report


def delete_removed_files(
    store: Retention, spool_root: Path, *, now: datetime | None = None
) -> tuple[int, int]:
    """Delete from this host the files of documents marked removed: (how many, their
    bytes). Looked for in the spool and its folders (a hot folder's claims), and, for rows
    removed within RECHECK, wherever their paths say (a shared hot folder's claims folder).
    Files no row names, and files an unremoved row names too, are left alone."""
    own: list[Path] = []
    copies: dict[str, list[Path]] = {}
    mail: list[Path] = []
    for path in _spool_files(spool_root):
        if path.name.startswith(CACHED_PREFIX):
            digest = path.name.removeprefix(CACHED_PREFIX).split(".")[0]
            copies.setdefault(digest, []).append(path)
        elif path.suffix == ".eml":
            mail.append(path)
        else:
            own.append(path)
    since = (store.clock_now() if now is None else now) - RECHECK
    seen = {str(p) for p in own}
    own += [Path(p) for p in store.recently_removed_paths(since) if p not in seen]
    doomed: list[Path] = []
    for chunk in _chunks([str(p) for p in own]):
        doomed += [Path(p) for p in store.removed_paths(chunk)]
    for chunk in _chunks(sorted(copies)):
        doomed += [p for digest in store.removed_digests(chunk) for p in copies[digest]]
    for chunk in _chunks([str(p) for p in mail]):
        doomed += [Path(p) for p in store.removed_mail(chunk)]
    count = size = 0
    folders: set[Path] = set()
    for path in doomed:
        with contextlib.suppress(FileNotFoundError):
            length = path.stat().st_size
            path.unlink()
            count += 1
            size += length
            folders.add(path.parent)
    for folder in folders:
        with contextlib.suppress(OSError):  # deleted all the same; only its flush failed
            fsync_dir(folder)
    return count, size


def _spool_files(spool_root: Path) -> Iterator[Path]:
    """The spool's files and its folders' (one level down), hidden ones left out."""
    if not spool_root.is_dir():
        return
    root = spool_root.resolve()
    folders = [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]
    for folder in folders:
        for path in folder.iterdir():
            if not path.name.startswith(".") and path.is_file():
                yield path


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), LOOKUP):
        yield items[start : start + LOOKUP]
