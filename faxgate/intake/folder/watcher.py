"""watchdog's inotify observer on a hot folder and its number sub-folders. Its events come
on the observer's thread; they are handed to the event loop with call_soon_threadsafe, in
order, as readiness signals for paths relative to the folder.

A file moved in from elsewhere comes as a move, not a creation (generate_full_events), so
it is known to be complete. watchdog only logs an inotify queue overflow: OverflowAlarm
listens for that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Final, Protocol

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.api import BaseObserver, ObservedWatch

from faxgate.intake.folder.naming import is_ignored
from faxgate.intake.folder.ready import Signal

_OVERFLOW_LOGGER: Final = "watchdog.observers.inotify_c"
_EMITTER_LOGGER: Final = "watchdog.observers.inotify"
_SIGNALS: Final = {
    "created": Signal.CREATED,
    "opened": Signal.OPENED,
    "modified": Signal.MODIFIED,
    "closed": Signal.CLOSED,
    "deleted": Signal.GONE,
}

Signals = list[tuple[str, Signal]]


class InotifyWatch:
    """Runs the observer; calls `on_signals` with the signals of each burst of events and
    `on_subfolder` when a sub-folder appears, both on the loop."""

    def __init__(
        self,
        folder: Path,
        ours: frozenset[str],
        loop: asyncio.AbstractEventLoop,
        on_signals: Callable[[Signals], None],
        on_subfolder: Callable[[str], None],
    ) -> None:
        self._folder = folder
        self._ours = ours
        self._loop = loop
        self._on_signals = on_signals
        self._on_subfolder = on_subfolder
        self._observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}
        self._inbox: deque[tuple[str, str, str, bool]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False

    # ------------------------------------------------------------------ blocking

    def start(self) -> None:
        from watchdog.observers.inotify import InotifyObserver

        observer = InotifyObserver(generate_full_events=True)
        self._watches[""] = observer.schedule(_Handler(self), str(self._folder), recursive=False)
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            observer.join(timeout=10)

    def watch_subfolders(self, names: Iterable[str]) -> None:
        observer = self._observer
        if observer is None:
            return
        for name in names:
            if name not in self._watches:
                with contextlib.suppress(OSError):
                    path = str(self._folder / name)
                    self._watches[name] = observer.schedule(_Handler(self), path, recursive=False)

    def _forget_subfolder(self, name: str) -> None:
        watch = self._watches.pop(name, None)
        if watch is not None and self._observer is not None:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    # ------------------------------------------------------------------ the observer's thread

    def receive(self, event_type: str, src: str, dest: str, is_directory: bool) -> None:
        with self._lock:
            self._inbox.append((event_type, src, dest, is_directory))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._drain)

    # ------------------------------------------------------------------ the loop

    def _drain(self) -> None:
        with self._lock:
            events = list(self._inbox)
            self._inbox.clear()
            self._scheduled = False
        signals: Signals = []
        for event_type, src, dest, is_directory in events:
            if is_directory:
                self._directory_event(event_type, src, dest)
            else:
                signals.extend(self._signals(event_type, src, dest))
        self._on_signals(signals)

    def _signals(self, event_type: str, src: str, dest: str) -> Signals:
        if event_type == "moved":
            out = []
            if (gone := relative(self._folder, self._ours, src)) is not None:
                out.append((gone, Signal.GONE))
            if (came := relative(self._folder, self._ours, dest)) is not None:
                out.append((came, Signal.MOVED_IN))
            return out
        signal = _SIGNALS.get(event_type)
        path = relative(self._folder, self._ours, src)
        return [] if signal is None or path is None else [(path, signal)]

    def _directory_event(self, event_type: str, src: str, dest: str) -> None:
        came = self._subfolder(dest if event_type == "moved" else src)
        went = self._subfolder(src) if event_type in ("moved", "deleted") else None
        if went is not None:
            self._forget_subfolder(went)
        if came is not None and event_type in ("created", "moved"):
            self.watch_subfolders([came])
            self._on_subfolder(came)  # files may have come with it, before its watch

    def _subfolder(self, path: str) -> str | None:
        found = relative(self._folder, self._ours, path)
        return None if found is None or "/" in found else found


def relative(folder: Path, ours: frozenset[str], path: str) -> str | None:
    """A path's place in the hot folder ("a.pdf", "+14155550100/a.pdf"); None for anything
    never taken: outside, deeper than one sub-folder, ignored names, faxgate's folders."""
    if not path:
        return None
    try:
        parts = Path(path).relative_to(folder).parts
    except ValueError:
        return None
    if not 1 <= len(parts) <= 2 or any(is_ignored(p) for p in parts) or parts[0] in ours:
        return None
    return "/".join(parts)


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: InotifyWatch) -> None:
        self._watch = watch

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.event_type in ("attrib", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return
        self._watch.receive(
            event.event_type,
            os.fsdecode(event.src_path),
            os.fsdecode(event.dest_path),
            event.is_directory,
        )


class Overflowing(Protocol):
    def overflowed(self) -> None: ...


@contextlib.contextmanager
def overflow_alarm(watchers: Sequence[Overflowing]) -> Iterator[None]:
    """Tell the watchers when watchdog logs an inotify queue overflow (events were lost),
    while the context lasts."""
    logger = logging.getLogger(_OVERFLOW_LOGGER)
    alarm = _OverflowAlarm(watchers)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    logger.addHandler(alarm)
    emitters = logging.getLogger(_EMITTER_LOGGER)
    emitters.addFilter(_quiet_stop)
    try:
        yield
    finally:
        logger.removeHandler(alarm)
        emitters.removeFilter(_quiet_stop)


class _OverflowAlarm(logging.Handler):
    def __init__(self, watchers: Sequence[Overflowing]) -> None:
        super().__init__(logging.WARNING)
        self._watchers = watchers

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            for watcher in self._watchers:
                watcher.overflowed()


def _quiet_stop(record: logging.LogRecord) -> bool:
    # watchdog logs this as an error when its reading thread stops mid-read; it is not.
    return not record.getMessage().startswith("InotifyEmitter.queue_events() called when")
