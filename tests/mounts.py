"""Real mounts for tests: a small tmpfs to fill, a folder made read-only by a bind mount.

They need root (or CAP_SYS_ADMIN) and `mount`; without them a test fails and says so.
Every mount is undone at teardown, the last made first, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import peers

NEEDS_ROOT = (
    "these tests mount tmpfs and bind mounts to make disks full and folders read-only: run "
    "them as root (or with CAP_SYS_ADMIN), where `mount` is installed"
)


class Mounts:
    """Mounts a test makes; all undone at teardown, the last made first."""

    def __init__(self) -> None:
        self._made: list[Path] = []

    def tmpfs(self, path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
        self._made.append(path)
        return path

    def bind(self, source: Path, path: Path, *, readonly: bool = False) -> Path:
        """`source` seen at `path` too (a folder over itself: `source == path`)."""
        path.mkdir(parents=True, exist_ok=True)
        self._mount("--bind", str(source), str(path))
        self._made.append(path)
        if readonly:
            self.remount(path, readonly=True)
        return path

    def readonly(self, path: Path) -> Path:
        """The folder made read-only where it is: a read-only bind mount over itself."""
        return self.bind(path, path, readonly=True)

    def remount(self, path: Path, *, readonly: bool) -> None:
        bind = ",bind" if path in self._made and not _is_tmpfs(path) else ""
        self._mount("-o", f"remount{bind},{'ro' if readonly else 'rw'}", str(path))

    def unmount(self, path: Path) -> None:
        self._made.remove(path)
        _run("umount", str(path))

    def undo(self) -> None:
        while self._made:
            path = self._made.pop()
            if subprocess.run(["umount", str(path)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy

    @staticmethod
    def _mount(*args: str) -> None:
        _run("mount", *args)


def _run(*command: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(NEEDS_ROOT)
    done = subprocess.run([peers.command(command[0]), *command[1:]], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"`{' '.join(command)}` failed: {done.stderr.strip()}; {NEEDS_ROOT}")


def _is_tmpfs(path: Path) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == str(path) and line.split()[2] == "tmpfs" for line in mounts)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    made = Mounts()
    try:
        yield made
    finally:
        made.undo()
