"""File moves for the hot folder that never overwrite and never lose a file. Blocking IO.

A file changes folders by a hard link to its new name and the removal of the old one:
unlike a rename, a link fails when the name is taken, so nothing is overwritten. Where
the two names are on different file systems (EXDEV), or the file system has no hard links
(some network shares), the file is copied and flushed to disk before the original goes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from faxgate.intake.folder_naming import unique_name

CHUNK: Final = 256 * 1024
_NO_LINKS: Final = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP})


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `path` with `data` in one step: readers see the old file or the new one.

    The temporary name starts with a dot, which the hot folder never takes.
    """
    temp = _temporary(path)
    try:
        with temp.open("wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_json(path: Path, value: Any, *, durable: bool = False, pretty: bool = True) -> None:
    write_atomic(path, json_bytes(value, pretty=pretty), durable=durable)


def json_bytes(value: Any, *, pretty: bool = True) -> bytes:
    indent = 2 if pretty else None
    try:
        return (json.dumps(value, ensure_ascii=False, indent=indent) + "\n").encode()
    except UnicodeEncodeError:
        # A file name that is not UTF-8 (its bytes kept as surrogates): escaped, it reads
        # back as the same name.
        return (json.dumps(value, ensure_ascii=True, indent=indent) + "\n").encode()


def read_json(path: Path) -> Any:
    with path.open("rb") as handle:
        return json.loads(handle.read())


def reserve(directory: Path, name: str, companion: str, content: bytes = b"") -> str:
    """A free name for a file and its companion ("a.pdf" and "a.pdf.result.json"): the
    first of name, "name (2)", ... where neither exists. The companion is created at once
    (exclusively, holding `content`), so two callers never get the same name."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        chosen = unique_name(
            name,
            lambda n: (directory / n).exists() or (directory / (n + companion)).exists(),
        )
        try:
            fd = os.open(directory / (chosen + companion), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            continue  # taken in between by someone else
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        return chosen


def move_file(source: Path, target: Path) -> None:
    """Move a file to `target`; FileExistsError when that name is taken.

    A symlink or node is moved as itself, never followed.
    """
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
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
        if exc.errno not in _NO_LINKS:
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
    temp = _temporary(target)
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(src_fd, "rb") as src, temp.open("wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, target)
        except OSError as exc:
            if exc.errno not in _NO_LINKS:
                raise
            if target.exists():
                raise FileExistsError(errno.EEXIST, "file exists", str(target)) from None
            os.rename(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(target.parent)


_TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")


def _temporary(path: Path) -> Path:
    """A hidden temporary name beside `path`: ".NAME.1a2b3c4d.tmp", NAME cut short when
    the whole would pass the file system's longest name."""
    room = 255 - len(".") - len(".12345678.tmp")
    name = os.fsencode(path.name)[:room].decode("utf-8", "ignore")
    return path.with_name(f".{name}.{secrets.token_hex(4)}.tmp")


def sweep_temporaries(directories: Iterable[Path]) -> None:
    """Remove the temporary files a crash left in these folders and their sub-folders
    (one level: the date folders)."""
    for directory in directories:
        with contextlib.suppress(FileNotFoundError):
            with os.scandir(directory) as it:
                entries = list(it)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    _sweep(Path(entry.path))
            _sweep(directory)


def _sweep(directory: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        remove_quietly(
            Path(entry.path)
            for entry in os.scandir(directory)
            if _TEMPORARY.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
        )


def same_file_system(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def remove_quietly(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
