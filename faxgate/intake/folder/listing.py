"""Looking at a hot folder without taking anything: listings, signatures, first bytes,
sidecars. Blocking IO; the watcher calls it from a worker thread. Nothing here follows a
symlink or opens anything but a regular file."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from faxgate.intake.folder.drops import Entry, Kind
from faxgate.intake.folder.naming import is_ignored
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.sidecar import MAX_SIDECAR_BYTES, Sidecar, SidecarError, parse_sidecar

HEAD_BYTES: Final = 512


def list_candidates(folder: Path, ours: frozenset[str]) -> tuple[dict[str, Signature], set[str]]:
    """Every file that may be taken, in the folder and its sub-folders (one level), by
    relative path; and the sub-folders. `ours`: top-level names never looked into."""
    found: dict[str, Signature] = {}
    subfolders: set[str] = set()
    with os.scandir(folder) as it:
        for entry in it:
            if is_ignored(entry.name) or entry.name in ours:
                continue
            if entry.is_dir(follow_symlinks=False):
                subfolders.add(entry.name)
                continue
            with contextlib.suppress(FileNotFoundError):
                found[entry.name] = signature(entry.stat(follow_symlinks=False))
    for sub in list(subfolders):
        try:
            with os.scandir(folder / sub) as it:
                for entry in it:
                    if is_ignored(entry.name) or entry.is_dir(follow_symlinks=False):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        found[f"{sub}/{entry.name}"] = signature(entry.stat(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            subfolders.discard(sub)
    return found, subfolders


def look_at(folder: Path, paths: Iterable[str]) -> dict[str, Signature]:
    """The signatures of some files; the missing ones left out."""
    found = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            found[path] = signature(os.lstat(folder / path))
    return found


def list_dir(directory: Path) -> tuple[dict[str, Entry], dict[str, Signature]]:
    """Every name in one folder: what it is, and its signature."""
    entries: dict[str, Entry] = {}
    signatures: dict[str, Signature] = {}
    with os.scandir(directory) as it:
        for item in it:
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            entries[item.name] = Entry(kind(info.st_mode), info.st_size)
            signatures[item.name] = signature(info)
    return entries, signatures


def kind(mode: int) -> Kind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    return "other"


def signature(info: os.stat_result) -> Signature:
    return Signature(info.st_size, info.st_mtime_ns, info.st_ino)


def read_sidecar(path: Path) -> Sidecar | SidecarError:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return SidecarError("the sidecar cannot be read (is it a symbolic link?)")
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return SidecarError("the sidecar is not a regular file")
        data = handle.read(MAX_SIDECAR_BYTES + 1)
    try:
        return parse_sidecar(data)
    except SidecarError as exc:
        return exc


def head(path: Path) -> bytes | None:
    """The first bytes of a document; none when it cannot be opened as a file, None when
    faxgate may not read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except PermissionError:
        return None
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        return handle.read(HEAD_BYTES)
