"""The document spool: files a job will send, written so that a crash never leaves half of one.

A file is written under a hidden temporary name in the spool directory, flushed to disk,
renamed to its final name and the directory flushed too. So a file under a final name is
always whole; a crash leaves at most a temporary file, which `cleanup_orphans` removes.

Names are made here, never taken from the user (that name is the document's display name,
kept by the store). Blocking IO: the daemon calls this from a worker thread.

`disk_trouble` tells the failures that pass once a person acts (a full disk, a read-only
folder, a store that cannot grow) from the others, for every part that keeps work for later
instead of refusing it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol

from faxgate.durable import fsync_dir

TEMP_PREFIX: Final = ".tmp-"
CHUNK_SIZE: Final = 64 * 1024
_SUFFIX_RE: Final = re.compile(r"\.[a-z0-9]{1,8}")


# Failures to write that a person mends (frees space, makes a folder writable again): the
# work is kept and tried again rather than refused or lost.
_PASSING_ERRNOS: Final = {
    errno.ENOSPC: "no space is left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "the disk reported an input/output error",
}
FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLite's primary result codes (the low byte of the extended ones).
_SQLITE_PASSING: Final = {
    13: "the store's disk is full (the database cannot grow)",  # SQLITE_FULL
    8: "the store is read-only",  # SQLITE_READONLY
    10: "the store's disk reported an input/output error",  # SQLITE_IOERR
    14: "the store's file cannot be opened",  # SQLITE_CANTOPEN
}


def disk_trouble(exc: BaseException) -> str | None:
    """Plain words for a failure to write that passes once a person frees space or makes a
    folder writable again (a full disk, a read-only file system, a permission, the store
    unable to grow); None for any other failure."""
    if isinstance(exc, OSError):
        return _PASSING_ERRNOS.get(exc.errno or 0)
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _SQLITE_PASSING.get(code & 0xFF)
        text = str(exc)
        if "disk is full" in text:
            return _SQLITE_PASSING[13]
        if "readonly database" in text:
            return _SQLITE_PASSING[8]
    return None


def passing_trouble(exc: BaseException) -> str:
    """disk_trouble's words for a failure that passes; any other failure is raised again."""
    trouble = disk_trouble(exc)
    if trouble is None:
        raise exc
    return trouble


class ByteSource(Protocol):
    def read(self, size: int, /) -> bytes: ...


class SpoolTooLarge(ValueError):
    """A stream was longer than the limit it was stored with."""


@dataclass(frozen=True, slots=True)
class SpooledFile:
    path: Path
    size: int
    sha256: str  # hex


def clean_suffix(suffix: str) -> str:
    """A short, harmless extension (".pdf"), or "" when the one given is not."""
    suffix = suffix.lower()
    return suffix if _SUFFIX_RE.fullmatch(suffix) else ""


class Spool:
    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    # -- writing

    def store_bytes(self, data: bytes, *, suffix: str = "") -> SpooledFile:
        return self._write(lambda out: out.write(data), suffix=suffix)

    def store_stream(
        self, stream: ByteSource, *, suffix: str = "", max_size: int | None = None
    ) -> SpooledFile:
        """Copy a binary stream into the spool in chunks; refuse past `max_size` bytes."""

        def copy(out: _HashingWriter) -> None:
            while chunk := stream.read(CHUNK_SIZE):
                out.write(chunk)
                if max_size is not None and out.size > max_size:
                    raise SpoolTooLarge(f"document larger than {max_size} bytes")

        return self._write(copy, suffix=suffix)

    def _write(self, fill: _Filler, *, suffix: str) -> SpooledFile:
        # mkstemp makes the file 0600 under a fresh name.
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        temp = Path(temp_name)
        final: Path | None = None
        try:
            with os.fdopen(fd, "wb") as raw:
                out = _HashingWriter(raw)
                fill(out)
                raw.flush()
                os.fsync(raw.fileno())
            final = self._new_path(suffix)
            os.rename(temp, final)
            fsync_dir(self.root)
        except BaseException:
            # Whatever failed (a full disk, the folder's flush), no file is left behind:
            # the caller was told it has none.
            temp.unlink(missing_ok=True)
            if final is not None:
                final.unlink(missing_ok=True)
            raise
        return SpooledFile(final, out.size, out.hexdigest())

    # -- claiming and removing

    def adopt(self, path: Path, *, suffix: str | None = None) -> SpooledFile:
        """Move an existing, complete file into the spool by rename (same file system only).

        The file's own extension is kept unless `suffix` is given. Raises OSError (EXDEV)
        across file systems and FileNotFoundError when someone else took the file first.
        """
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file: {path}")
        final = self._new_path(path.suffix if suffix is None else suffix)
        os.rename(path, final)
        try:
            # Hashed only now that no one else can reach the file under its new name.
            size, digest = 0, hashlib.sha256()
            with final.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    size += len(chunk)
                    digest.update(chunk)
                os.fsync(f.fileno())  # written by someone else: make sure it is on disk
            fsync_dir(self.root)
            if path.parent.resolve() != self.root:
                fsync_dir(path.parent)
        except BaseException:
            # Not adopted after all: the file goes back where the caller had it.
            with contextlib.suppress(OSError):
                os.rename(final, path)
            raise
        return SpooledFile(final, size, digest.hexdigest())

    def remove(self, path: Path) -> bool:
        """Delete a spooled file; False when it was already gone."""
        path = self._inside(path)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(self.root)
        return True

    # -- looking around

    def files(self) -> list[Path]:
        """The spooled files, temporary ones left out, sorted by name (by creation second)."""
        return sorted(p for p in self.root.iterdir() if not p.name.startswith(".") and p.is_file())

    def cleanup_orphans(
        self, *, older_than: timedelta = timedelta(hours=1), now: datetime | None = None
    ) -> list[Path]:
        """Remove temporary files left by a crash. Recent ones are spared: another process
        (the CLI sending while the daemon starts) may still be writing them."""
        cutoff = (now or datetime.now(UTC)) - older_than
        removed = []
        for p in self.root.iterdir():
            if not p.name.startswith(TEMP_PREFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = p.lstat()
                if stat.S_ISREG(info.st_mode) and info.st_mtime <= cutoff.timestamp():
                    p.unlink()
                    removed.append(p)
        if removed:
            fsync_dir(self.root)
        return removed

    # -- names

    def _new_path(self, suffix: str) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        while True:
            candidate = self.root / f"{stamp}-{secrets.token_hex(8)}{clean_suffix(suffix)}"
            if not candidate.exists():  # 64 random bits: a clash is a formality
                return candidate

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved.parent != self.root or resolved.name.startswith("."):
            raise ValueError(f"not a spooled file: {path}")
        return resolved


class _HashingWriter:
    def __init__(self, raw: _RawWriter) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._raw.write(data)
        self._digest.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _RawWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Filler(Protocol):
    def __call__(self, out: _HashingWriter, /) -> None: ...
