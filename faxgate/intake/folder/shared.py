"""A hot folder shared by several instances (on NFS or SMB, or one local folder): each
file taken by exactly one of them. Blocking IO.

Each instance claims into a folder of its own inside the hot folder,
`<folder>/.faxgate-claims/<instance>/` (hidden: never taken from). The first step of a claim
renames the file there; a rename inside one file system is atomic, on NFS and SMB too, so
of the instances that try, one has the file and the others find it gone and pass over it.
The claim record, the claimed files and the placement records are all in that folder, so
any instance can finish a claim and place a drop's result.

While it lives, an instance holds a lock on `.lock` in its claims folder. An instance gone
(killed, stopped, its host dead: the file server lets its locks go) leaves its folder
unlocked: the first instance to lock it takes it over, under the lock: the claims it left
half done are finished from their records (a drop whose jobs are in the store is never
queued again), and once the jobs of its files are settled, the folder is removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Final

from faxgate.intake.folder.claim_records import Outcome
from faxgate.intake.folder.claims import LOCK_NAME, PLACED_SUFFIX, ClaimBox
from faxgate.intake.folder.files import remove_quietly

log = logging.getLogger("faxgate.hotfolder")

PROCESSING_DIR: Final = ".faxgate-claims"
# File names of SMB shares refuse ":" and the like; an instance's name has them.
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")


class LocksUnsupported(Exception):
    """The hot folder's file system takes no locks: no instance could tell one gone."""


def folder_name(owner: str) -> str:
    return _UNSAFE.sub("-", owner)


class SharedClaims:
    """This instance's claims folder in a shared hot folder, locked while it lives."""

    def __init__(self, hot_folder: Path, owner: str, box: ClaimBox, lock_fd: int) -> None:
        self.hot_folder = hot_folder
        self.box = box
        self._lock_fd = lock_fd
        self._owner = owner
        self._adopted: set[str] = set()  # claims folders of instances gone, taken over
        box.others = self.take_over

    @classmethod
    def open(
        cls, hot_folder: Path, owner: str, open_box: Callable[[Path], ClaimBox]
    ) -> SharedClaims:
        """Make and lock this instance's claims folder. The lock is taken on a file of
        another name first, then renamed to `.lock`: nobody looks at a folder without one,
        so none can take a folder over before its lock is held."""
        check_locks(hot_folder)
        root = hot_folder / PROCESSING_DIR / folder_name(owner)
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".lock-{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            if not _try_lock(fd):
                raise LocksUnsupported(f"{temporary} is locked by another")
            os.rename(temporary, root / LOCK_NAME)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        return cls(hot_folder, owner, open_box(root), fd)

    def close(self) -> None:
        """On stop: the lock let go, for another to take the folder over (and remove it
        once its faxes are done)."""
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def take_over(self) -> list[Outcome]:
        """The claims folders of instances gone: their half-done claims finished here, and
        each one removed once nothing is left in it."""
        processing = self.box.root.parent
        outcomes: list[Outcome] = []
        try:
            names = sorted(os.listdir(processing))
        except FileNotFoundError:
            return outcomes
        for name in names:
            folder = processing / name
            if folder == self.box.root:
                continue
            try:
                fd = os.open(folder / LOCK_NAME, os.O_RDWR)
            except (FileNotFoundError, NotADirectoryError):
                continue  # not a claims folder, or one being made
            try:
                if not _try_lock(fd):
                    continue  # its instance lives
                outcomes.extend(self._adopt(folder))
            finally:
                os.close(fd)
        return outcomes

    def _adopt(self, folder: Path) -> list[Outcome]:
        """A folder whose instance is gone, its lock held now: its claims finished; the
        folder removed when empty (the placed drops took their files with them)."""
        box = ClaimBox(self.box.spool.root, self.box.store, root=folder)
        outcomes = box.recover()
        if folder.name not in self._adopted or outcomes:
            # Looked at again at each rescan until its faxes are done: said once.
            self._adopted.add(folder.name)
            log.info(
                "hot folder claims of an instance gone taken over folder=%s claims=%s "
                "drops_finished=%d",
                self.hot_folder,
                folder.name,
                len(outcomes),
            )
        names = os.listdir(folder)
        if all(name.startswith(".") or name.endswith(PLACED_SUFFIX) for name in names):
            # No claim left, no document a fax may still need: only the records of drops
            # placed, whose files are gone with them, and temporary files of writes that
            # an instance killed left (the lock is hidden too).
            with contextlib.suppress(OSError):
                remove_quietly(folder / name for name in names if name != LOCK_NAME)
                (folder / LOCK_NAME).unlink()
                folder.rmdir()
                log.info("hot folder claims folder removed path=%s", folder)
        return outcomes


def local_only_locks(path: Path, mountinfo: str) -> str | None:
    """Why locks on `path` would not reach the file server (so that each host sees only
    its own, and takes the claims of instances alive on other hosts for dead ones), or
    None. `mountinfo`: the text of /proc/self/mountinfo. Pure."""
    best: tuple[str, str, set[str]] | None = None
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 6 or len(rest) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        if path.is_relative_to(point) and (best is None or len(point) >= len(best[0])):
            options = {*fields[5].split(","), *rest[2].split(",")}
            best = (point, rest[0], options)
    if best is None:
        return None
    point, kind, options = best
    if kind.startswith("nfs") and options & {"nolock", "local_lock=flock", "local_lock=all"}:
        return f"{point} is an NFS mount with locks kept on this host (nolock or local_lock)"
    if kind in ("cifs", "smb3") and "nobrl" in options:
        return f"{point} is an SMB mount with locks kept on this host (nobrl)"
    return None


def check_locks(folder: Path) -> None:
    """LocksUnsupported when the folder's mount keeps locks on this host only."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return  # not Linux: nothing to tell
    why = local_only_locks(folder.resolve(), mountinfo)
    if why is not None:
        raise LocksUnsupported(
            f"{why}: instances on other hosts could not tell this one alive; mount it "
            "with locks that reach the file server"
        )


def _try_lock(fd: int) -> bool:
    """An exclusive lock on `fd` without waiting: False when another holds it.
    flock: one per open file, so two instances in one process exclude each other too;
    Linux's NFS client makes it a lock on the server, which lets the locks of a dead
    host go when its lease runs out."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise LocksUnsupported(f"the file system takes no locks: {exc.strerror}") from exc
        raise
    return True
