"""A claim's files between the hot folder and the spool's claims folder. Blocking IO.

A file comes in by a hard link into the claims folder, then its name in the hot folder
removed: whoever removes the name owns the file. It goes back (a claim that cannot be
queued now) by a link the other way, the same file, so that a recovery finds it unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from faxgate.durable import copy_file, fsync_dir
from faxgate.intake.folder.claim_records import ClaimedFile, DropClaim
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import Places

_NO_LINKS: Final = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def signature_of(info: os.stat_result) -> Signature:
    return Signature(info.st_size, info.st_mtime_ns, info.st_ino)


def move_in(source: Path, target: Path) -> None:
    """A hard link into the spool, then the folder's name removed. (A rename out of a
    watched folder leaves inotify an unpaired move, which watchdog holds back half a
    second, and every event after it.)"""
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.EXDEV:
            # The spool is on another file system: copied and flushed, then let go.
            copy_file(source, target)
        elif exc.errno in _NO_LINKS:
            os.rename(source, target)  # a file system without hard links
            return
        else:
            raise
    try:
        os.unlink(source)
    except OSError:
        # Someone else took it first, or the folder is read-only: not ours after all.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        raise


def rename_in(source: Path, target: Path) -> None:
    """A shared hot folder: the file renamed into this instance's claims folder, inside
    the hot folder, so one step of the file system the instances share. Whoever renames
    it has it; the others find it gone (FileNotFoundError)."""
    try:
        os.rename(source, target)
    except FileNotFoundError:
        # NFS may answer a rename sent again after a lost reply with "gone": the target
        # (a name only this claim uses) says it went through.
        if target.exists():
            return
        raise


def put_back(claims_dir: Path, places: Places, files: Sequence[ClaimedFile]) -> bool:
    """Give moved files their names in the folder again (a hard link back); False when
    one cannot go back (its name was taken meanwhile, the spool is on another file
    system...): it stays in the spool."""
    back = True
    for file in files:
        target, source = claims_dir / file.target, places.folder / file.source
        if not target.exists():
            continue
        try:
            os.link(target, source, follow_symlinks=False)
        except OSError:
            back = False
            continue
        os.unlink(target)
    if files:
        with contextlib.suppress(OSError):
            fsync_dir(claims_dir)
            for folder in {(places.folder / f.source).parent for f in files}:
                fsync_dir(folder)
    return back


def flush(claims_dir: Path, places: Places, claims: Sequence[DropClaim]) -> None:
    """The moves of these claims on disk: the claims folder, and each folder the files
    left (as far as it can be flushed)."""
    if not claims:
        return
    fsync_dir(claims_dir)
    folders = {(places.folder / f.source).parent for c in claims for f in c.files}
    for folder in folders:
        with contextlib.suppress(OSError):
            fsync_dir(folder)


def let_go_of_copy(places: Places, file: ClaimedFile) -> None:
    """A link (or copy) into the spool was made, the folder's name not yet removed:
    remove it now. A new file dropped under the same name has another inode (or size,
    or time), and stays."""
    source = places.folder / file.source
    with contextlib.suppress(FileNotFoundError):
        if signature_of(os.lstat(source)) == file.signature:
            os.unlink(source)
