"""Documents every instance sharing a PostgreSQL store can read: their bytes kept in the
database by digest, and this instance's spool a cache of them.

A job's files and an inbound fax's document are written into the spool of the instance
that took them in, and the store keeps their paths. On PostgreSQL their bytes also go
into `document_bytes` (keyed by sha256), in the same transaction as the rows that name
them: a job never names a document the database lacks, and an instance that dies
half-way leaves neither. Where a document is read back (`documents`, `get_inbound`) and
its file is not on this host, it is written into this instance's spool from the database
(a temporary name, flushed, renamed) and that path is given instead.

On SQLite (one host) nothing of this happens: the table stays empty and the paths are
the spool's, as they always were.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from faxgate.durable import write_bytes
from faxgate.store.db import Database
from faxgate.store.dialect import Connection
from faxgate.store.spool import TEMP_PREFIX, clean_suffix

log = logging.getLogger("faxgate.store")

# A document written from the database into the spool: its name says it is a copy.
CACHED_PREFIX: Final = "db-"
# pg_advisory_xact_lock's key over document_bytes: a write that finds a document's bytes
# already there shares it; removing bytes no row names any more takes it alone (see
# store/retention.py), so no new row ever names bytes removed at the same moment.
BYTES_LOCK: Final = 0x66617862797465  # "faxbyte"


class DocumentBytes(Database):
    """The document_bytes table, and the spool as its cache on this host."""

    _spool_dir: Path | None = None

    def cache_documents_in(self, spool_dir: Path) -> None:
        """Where this instance writes the documents it reads from the database (its
        spool). Without it, a document not on this host is given by its path as kept."""
        self._spool_dir = spool_dir

    @property
    def keeps_document_bytes(self) -> bool:
        """Whether documents' bytes go into the database (a store several hosts share)."""
        return self._dialect.name == "postgresql"

    def _read_for_keeping(self, files: Iterable[tuple[Path, str]]) -> dict[str, bytes]:
        """The bytes of the files (path, sha256) a write will name, read before the write
        takes its lock; each checked against its digest. Nothing on SQLite."""
        if not self.keeps_document_bytes:
            return {}
        found: dict[str, bytes] = {}
        for path, sha256 in files:
            if sha256 in found:
                continue
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise OSError(f"the document {path} changed since it was spooled")
            found[sha256] = data
        return found

    def _keep_bytes(self, conn: Connection, at: str, contents: dict[str, bytes]) -> None:
        """Insert the bytes the database lacks, in the caller's transaction. Another
        instance inserting the same digest at once: the insert waits for it, and does
        nothing if it committed."""
        if contents and self._dialect.shared_lock:
            conn.execute(self._dialect.shared_lock, (BYTES_LOCK,))
        for sha256, data in contents.items():
            if conn.execute("SELECT 1 FROM document_bytes WHERE sha256 = ?", (sha256,)).fetchone():
                continue
            conn.execute(
                self._dialect.insert_ignoring(
                    "document_bytes", ("sha256", "size", "content", "stored_at")
                ),
                (sha256, len(data), data, at),
            )

    def _local_path(self, path: Path, sha256: str) -> Path:
        """A path on this host holding the document: its own when there, else a copy
        written into this instance's spool from the database. The path as kept when
        neither can be had (the reader says the document is missing, as before)."""
        if not self.keeps_document_bytes or self._spool_dir is None or path.is_file():
            return path
        cached = self._spool_dir / f"{CACHED_PREFIX}{sha256}{clean_suffix(path.suffix)}"
        if cached.is_file():
            return cached
        rows = self._query("SELECT content FROM document_bytes WHERE sha256 = ?", (sha256,))
        if not rows:
            return path
        data = bytes(rows[0]["content"])
        if hashlib.sha256(data).hexdigest() != sha256:
            log.error("document bytes do not match their digest sha256=%s", sha256)
            return path
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        # The spool's own temporary prefix: a copy a crash cut short is swept with the rest.
        temp = self._spool_dir / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        write_bytes(cached, data, mode=0o600, temp=temp)
        log.info("document copied from the store sha256=%s path=%s", sha256, cached)
        return cached

    def stored_document(self, sha256: str) -> bytes | None:
        """A document's bytes as the database keeps them (None: not kept)."""
        rows = self._query("SELECT content FROM document_bytes WHERE sha256 = ?", (sha256,))
        return bytes(rows[0]["content"]) if rows else None
