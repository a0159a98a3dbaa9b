"""When a dropped file is complete. Pure: signals and listings in, ready files out.

A file is complete when
- it was closed after writing (inotify's close-write);
- it was moved in, or renamed within the folder (a writer's last step: `x.pdf.part` ->
  `x.pdf`);
- it appeared without being opened (a hard link, a symlink, a device node: complete as
  they are; the checks refuse what is not a regular file);
- or, seen only by listing the folder (poll mode, at start, at a rescan, after an inotify
  overflow), its size, time and inode stayed the same for `stable_for`.

Paths are relative to the hot folder ("a.pdf", "+14155550100/a.pdf"); times are the
caller's monotonic seconds. A file handed out by `take` leaves the tracker: the caller
either uses it up or gives it back with `hold` to be offered again later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

# A new name not opened within this time was not made by open(O_CREAT): a link or a
# node. Creation and open come from one system call, so this is a margin for how the
# events are read, not for a writer.
CREATED_GRACE: Final = 0.5


class Signal(StrEnum):
    CREATED = "created"
    OPENED = "opened"
    MODIFIED = "modified"
    CLOSED = "closed"  # closed after writing
    MOVED_IN = "moved_in"
    GONE = "gone"


@dataclass(frozen=True, slots=True)
class Signature:
    """What a listing sees of a file; any change means someone is still at it."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True, slots=True)
class Taken:
    path: str
    signature: Signature | None  # as last listed; None when only events were seen
    ready_since: float
    generation: int = 0  # of its folder when taken (see Readiness.hold)


class _State(StrEnum):
    CREATED = "created"  # a new name; written next, or complete as it is (a link)
    WRITING = "writing"  # waits for its close
    LISTED = "listed"  # seen by listing only: waits until unchanged for stable_for
    READY = "ready"
    HELD = "held"  # ready, but waiting for something else (its sidecar, say)


@dataclass(slots=True)
class _Entry:
    state: _State
    since: float
    signature: Signature | None = None
    ready_since: float | None = None
    until: float | None = None  # HELD: offered again then (None: when its folder changes)


def parent(path: str) -> str:
    """The sub-folder of a relative path ("" for the hot folder itself)."""
    return path.rpartition("/")[0]


class Readiness:
    def __init__(self, *, stable_for: float, created_grace: float = CREATED_GRACE) -> None:
        self._stable_for = stable_for
        self._grace = created_grace
        self._entries: dict[str, _Entry] = {}
        # Whether any file may be held: spares a look at every file on every close.
        self._maybe_held = False
        # Per folder, how many times a file there became ready.
        self._generations: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    # -------------------------------------------------------------- what is seen

    def signal(self, path: str, signal: Signal, now: float) -> None:
        """An event from the file system's notifications."""
        entry = self._entries.get(path)
        match signal:
            case Signal.GONE:
                self._entries.pop(path, None)
            case Signal.CREATED:
                self._entries[path] = _Entry(_State.CREATED, now)
            case Signal.OPENED:
                # Only an open right after creation tells of a writer: a reader (faxgate
                # itself, checking a file) opens files too.
                if entry is not None and entry.state is _State.CREATED:
                    entry.state = _State.WRITING
            case Signal.MODIFIED:
                if entry is None or entry.state is not _State.WRITING:
                    self._entries[path] = _Entry(_State.WRITING, now)
            case Signal.CLOSED | Signal.MOVED_IN:
                self._entries[path] = _Entry(_State.READY, now, ready_since=now)
                self.release(parent(path))

    def listed(self, path: str, signature: Signature, now: float) -> None:
        """A listing (or a look at one file) that began at `now` found it so. A listing
        runs while events come in: what an event said since then is newer."""
        entry = self._entries.get(path)
        if entry is not None and entry.since > now:
            return
        if entry is None:
            self._entries[path] = _Entry(_State.LISTED, now, signature)
            self._settle(path, now)
        elif entry.state is _State.LISTED:
            if entry.signature != signature:
                entry.since, entry.signature = now, signature
            self._settle(path, now)
        elif entry.state in (_State.READY, _State.HELD):
            if entry.signature is not None and entry.signature != signature:
                # Changed while it waited: someone is writing it again.
                self._entries[path] = _Entry(_State.LISTED, now, signature)
            elif entry.signature is None:
                entry.signature = signature
        # CREATED and WRITING: the events know better; an overflow resets them.

    def _settle(self, path: str, now: float) -> None:
        entry = self._entries[path]
        if now - entry.since >= self._stable_for:
            entry.state, entry.ready_since = _State.READY, now
            self.release(parent(path))

    def forget_missing(
        self, present: Iterable[str], listed: Callable[[str], bool], began: float
    ) -> None:
        """After a full listing that began at `began`: files it covered (`listed(path)`)
        but did not find are gone, unless an event told of them since it began."""
        found = set(present)
        for path, entry in list(self._entries.items()):
            if listed(path) and path not in found and entry.since <= began:
                del self._entries[path]

    def vanished(self, path: str, began: float) -> None:
        """A look that began at `began` did not find the file."""
        entry = self._entries.get(path)
        if entry is not None and entry.since <= began:
            del self._entries[path]

    def recheck(self, path: str, now: float) -> None:
        """A taken file changed before it was claimed: wait for it to be stable again."""
        if path not in self._entries:
            self._entries[path] = _Entry(_State.LISTED, now)

    def reset_writing(self, now: float) -> None:
        """Events were lost (an inotify overflow): files waiting for a close may never get
        one, so they wait for a stable listing instead."""
        for entry in self._entries.values():
            if entry.state in (_State.CREATED, _State.WRITING):
                entry.state, entry.since, entry.signature = _State.LISTED, now, None

    # -------------------------------------------------------------- what is due

    def due_checks(self, now: float) -> list[str]:
        """Files seen by listing whose quiet time is up: look at them again."""
        return [
            path
            for path, entry in self._entries.items()
            if entry.state is _State.LISTED and now - entry.since >= self._stable_for
        ]

    def take(self, now: float, limit: int) -> list[Taken]:
        """Up to `limit` complete files, oldest first; they leave the tracker."""
        taken: list[Taken] = []
        for path, entry in list(self._entries.items()):
            if entry.state is _State.CREATED and now - entry.since >= self._grace:
                entry.state, entry.ready_since = _State.READY, now
                self.release(parent(path))
            elif entry.state is _State.HELD and entry.until is not None and entry.until <= now:
                entry.state = _State.READY
            if entry.state is _State.READY and len(taken) < limit:
                del self._entries[path]
                generation = self._generations.get(parent(path), 0)
                taken.append(Taken(path, entry.signature, entry.ready_since or now, generation))
        return taken

    def hold(self, taken: Taken, until: float | None) -> None:
        """Give a taken file back, to be offered again at `until`, or when another file in
        its folder is ready (None: only then). A newer sighting of the path wins. If
        another file in its folder became ready while it was out, it is offered again at
        once: what it waited for may have come meanwhile."""
        if taken.path in self._entries:
            return
        changed = self._generations.get(parent(taken.path), 0) != taken.generation
        state = _State.READY if changed else _State.HELD
        self._entries[taken.path] = _Entry(
            state, taken.ready_since, taken.signature, taken.ready_since, until
        )
        self._maybe_held = self._maybe_held or not changed

    def release(self, folder: str) -> None:
        """A file in `folder` became ready: files held there are offered again."""
        self._generations[folder] = self._generations.get(folder, 0) + 1
        if not self._maybe_held:
            return
        still_held = False
        for path, entry in self._entries.items():
            if entry.state is _State.HELD:
                if parent(path) == folder:
                    entry.state = _State.READY
                else:
                    still_held = True
        self._maybe_held = still_held

    def pending(self) -> set[str]:
        """Files known but not complete yet."""
        incomplete = (_State.CREATED, _State.WRITING, _State.LISTED)
        return {path for path, entry in self._entries.items() if entry.state in incomplete}

    def next_deadline(self) -> float | None:
        """When `take` or `due_checks` may next have something (None: not before a signal)."""
        moments: list[float] = []
        for entry in self._entries.values():
            match entry.state:
                case _State.READY:
                    moments.append(entry.since)
                case _State.CREATED:
                    moments.append(entry.since + self._grace)
                case _State.LISTED:
                    moments.append(entry.since + self._stable_for)
                case _State.HELD if entry.until is not None:
                    moments.append(entry.until)
        return min(moments, default=None)
