"""Writes and moves that a crash or a power cut never leaves half done. Blocking IO.

- `write_file` / `write_bytes`: a temporary name beside the target (created exclusively),
  the data flushed to disk, renamed to the target in one step, the folder flushed too.
  Readers see the old file or the new one, never a part.
- `fsync_dir`: a rename or a removal is on disk only once its folder is flushed.
- `move_file` / `copy_file`: a file changes folders by a hard link to its new name and the
  removal of the old one: unlike a rename, a link fails when the name is taken, so nothing
  is overwritten. Where the two names are on different file systems (EXDEV), or the file
  system has no hard links (some network shares), the file is copied and flushed to disk
  before the original goes.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Final

CHUNK: Final = 256 * 1024
NO_LINKS: Final = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})
# The names `temporary_name` gives, for sweeping what a crash left.
TEMPORARY: Final = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(
    target: Path,
    fill: Callable[[BinaryIO], object],
    *,
    mode: int = 0o666,
    temp: Path | None = None,
    sync: bool = True,
) -> None:
    """Replace `target` with what `fill` writes, in one step.

    `temp` (default: a hidden random name beside the target) is created exclusively with
    `mode` (less the umask); it never outlives a failure. `sync=False` skips both flushes,
    for files whose loss a crash may cost (a status note rewritten often).
    """
    temp = temporary_name(target) if temp is None else temp
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(target.parent)


def write_bytes(
    target: Path, data: bytes, *, mode: int = 0o666, temp: Path | None = None, sync: bool = True
) -> None:
    write_file(target, lambda out: out.write(data), mode=mode, temp=temp, sync=sync)


def move_file(source: Path, target: Path) -> None:
    """Move a file to `target`; FileExistsError when that name is taken.

    A symlink or node is moved as itself, never followed.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        # EXDEV: another mount, even of the same file system (a bind mount, systemd's
        # ReadWritePaths=), where a rename fails alike.
        _copy_or_rename(source, target, may_rename=exc.errno != errno.EXDEV)
        return
    os.unlink(source)


def copy_file(source: Path, target: Path) -> None:
    """Give `target` the content of `source` (a second link where possible); the source
    stays. FileExistsError when the name is taken."""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in NO_LINKS:
            raise
        _copy(source, target)


def _copy_or_rename(source: Path, target: Path, *, may_rename: bool) -> None:
    info = os.lstat(source)
    if may_rename and info.st_dev == os.stat(target.parent).st_dev:
        # Same file system without hard links: a rename, checked first (a small race:
        # this file system offers nothing better).
        if target.exists() or target.is_symlink():
            raise FileExistsError(errno.EEXIST, "file exists", str(target))
        os.rename(source, target)
        return
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(info.st_mode):
        _copy(source, target)
    # Anything else (a FIFO, a device) has no content to keep: it is only removed.
    os.unlink(source)


def _copy(source: Path, target: Path) -> None:
    """Copy to a hidden temporary name beside the target, flush, then take the name."""
    info = os.lstat(source)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"not a regular file: {source}")
    temp = temporary_name(target)
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(src_fd, "rb") as src, temp.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, target)
        except OSError as exc:
            if exc.errno not in NO_LINKS:
                raise
            if target.exists():
                raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
            os.rename(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(target.parent)


def temporary_name(path: Path) -> Path:
    """A hidden temporary name beside `path`: ".NAME.1a2b3c4d.tmp", NAME cut short when
    the whole would pass the file system's longest name."""
    room = 255 - len(".") - len(".12345678.tmp")
    name = os.fsencode(path.name)[:room].decode("utf-8", "ignore")
    return path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")
