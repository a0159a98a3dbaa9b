"""Writing an inbound fax into an output folder, so that a watcher never reads half a file.

Each file is written under a hidden temporary name (`.<name>.partial-<random>`), flushed to
disk, renamed to its final name, and the folder flushed too. The .json metadata goes first
and the document last, so when the document appears its details are already beside it.

The names come from the fax's record (faxgate.inbound.compose), so writing the same fax
again (after a crash) finds its files in place and leaves them be: idempotent by name.
A folder that cannot be written now (a full disk, a read-only mount, a permission) raises
FolderUnwritable, saying where and why; the delivery is tried again later and leaves no
temporary file behind. Blocking IO: the daemon calls this from a worker thread.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

from faxgate.domain.inbound import InboundFax
from faxgate.durable import write_file
from faxgate.inbound.compose import document_file_name, file_stem, metadata_bytes
from faxgate.store.spool import disk_trouble

_CHUNK: Final = 64 * 1024
_PARTIAL: Final = ".partial-"


class DocumentMissing(Exception):
    """The fax's document is no longer in the spool."""


class FolderUnwritable(OSError):
    """The output folder cannot be written now; the message says where and why."""


def write_to_folder(folder: Path, fax: InboundFax) -> Path:
    """Write the fax's metadata and document into `folder`; the path of the main file
    (the document, or the .json when the callback brought none)."""
    try:
        return _write_to_folder(folder, fax)
    except OSError as exc:
        trouble = disk_trouble(exc)
        if trouble is None or isinstance(exc, FolderUnwritable):
            raise
        unwritable = FolderUnwritable(
            f"cannot write the fax {file_stem(fax)} into {folder}: {trouble}; tried again later"
        )
        unwritable.errno = exc.errno
        raise unwritable from exc


def _write_to_folder(folder: Path, fax: InboundFax) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = file_stem(fax)
    _remove_leftovers(folder, stem)
    meta = folder / f"{stem}.json"
    data = metadata_bytes(fax)
    _write_file(meta, lambda out: out.write(data), hashlib.sha256(data).hexdigest())
    name = document_file_name(fax)
    if fax.document is None or name is None:
        return meta
    source = fax.document.path
    target = folder / name

    def copy(out: BinaryIO) -> None:
        try:
            handle = source.open("rb")
        except FileNotFoundError:
            raise DocumentMissing(f"the document {source} is missing from the spool") from None
        with handle:
            while chunk := handle.read(_CHUNK):
                out.write(chunk)

    _write_file(target, copy, fax.document.sha256)
    return target


def _write_file(target: Path, fill: Callable[[BinaryIO], object], sha256: str) -> None:
    if _holds(target, sha256):
        return  # written before a crash: the same bytes under the same name
    temp = target.with_name(f".{target.name}{_PARTIAL}{secrets.token_hex(4)}")
    # 0o666 less the umask, as any program's new file: readers of the folder need it.
    write_file(target, fill, mode=0o666, temp=temp)


def _holds(path: Path, sha256: str) -> bool:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return False
    return digest.hexdigest() == sha256


def _remove_leftovers(folder: Path, stem: str) -> None:
    """Temporary files of this fax left by a crash mid-write (no one else uses its stem)."""
    for leftover in folder.glob(f".{stem}.*{_PARTIAL}*"):
        leftover.unlink(missing_ok=True)
