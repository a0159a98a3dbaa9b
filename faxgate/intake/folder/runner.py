"""The hot folder: files dropped into a folder become faxes (see docs/hotfolder.md).

One FolderWatcher per configured folder, each a task on the event loop:
- it learns of files from watchdog's inotify observer (mode "inotify", watcher.py:
  each file as it is closed or moved in) or from listing the folder every poll_interval
  (mode "poll", for SMB and NFS mounts, where inotify sees nothing; listing.py);
- it lists the folder at start (files already there give no event), at every
  rescan_interval and after an inotify overflow, so that nothing missed stays;
- ready.py decides when a file is complete; in a worker thread, drops.py decides what
  the complete files make, claims.py claims them into the spool and queues their jobs in
  one transaction per batch, and refused files go to failed/ (refusals.py);
- then the dispatcher is woken.

The hot folder and its number sub-folders are watched, one level deep; sent/, failed/ and
processing/ are never taken from, wherever they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from faxgate import metrics
from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.folder.claim_records import DropClaim, NotTaken, Outcome, Queued, Spoiled
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.drops import Defaults, Drop, FolderView, Refuse, Wait, plan
from faxgate.intake.folder.files import same_file_system, sweep_temporaries
from faxgate.intake.folder.listing import head, list_candidates, list_dir, look_at, read_sidecar
from faxgate.intake.folder.naming import is_sidecar
from faxgate.intake.folder.ready import Readiness, Signature, Taken, parent
from faxgate.intake.folder.refusals import refuse
from faxgate.intake.folder.status import Places
from faxgate.intake.folder.watcher import InotifyWatch, Signals
from faxgate.runner import run_loop
from faxgate.settings import FolderSettings

log = logging.getLogger("faxgate.hotfolder")

BATCH: Final = 250  # files handled at once: one claim record, one store transaction
_ERROR_PAUSE: Final = 1.0  # seconds before trying again after a failed cycle
# Files left in place by a full disk or a read-only folder are tried again this soon.
_STUCK_RETRY: Final = 10.0  # seconds


class FolderError(Exception):
    """A hot folder cannot be used; the message says why in plain words."""


# ---------------------------------------------------------------------------- the manager


def after_claims(outcomes: Iterable[Outcome]) -> None:
    """Spoiled claims go to failed/; taken files are counted (blocking: a thread)."""
    for outcome in outcomes:
        if isinstance(outcome, Spoiled) and outcome.files:
            refuse(
                outcome.places,
                outcome.files,
                outcome.code,
                outcome.reason,
                dropped_as=outcome.claim.documents[0].source,
            )
        elif isinstance(outcome, Queued):
            folder = str(outcome.places.folder)
            metrics.folder_files_taken.labels(folder=folder).inc(len(outcome.claim.documents))


# ---------------------------------------------------------------------------- one folder


@dataclass
class _Work:
    """What one batch did, for the loop to note."""

    waits: list[tuple[Taken, float | None]] = field(default_factory=list)
    changed: list[tuple[str, Signature | None]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def queued(self) -> bool:
        return any(isinstance(o, Queued) for o in self.outcomes)


class FolderWatcher:
    def __init__(
        self, settings: FolderSettings, *, policy: NumberPolicy, wake: Callable[[], None]
    ) -> None:
        self.settings = settings
        self.places = Places.of(settings)
        self._wake = wake
        self._defaults = _defaults(settings, policy)
        self._ready = Readiness(stable_for=settings.stable_for.total_seconds())
        self._ours = self.places.inside()  # sent/, failed/, processing/ when inside
        self._box: ClaimBox | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inotify: InotifyWatch | None = None
        self._changed = asyncio.Event()
        self._rescan_at = 0.0  # loop time of the next full listing
        self._overflowed = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # for tests and the log: batches handled
        self.rescans = 0

    @property
    def folder(self) -> Path:
        return self.places.folder

    @property
    def watching(self) -> bool:
        """Started and not yet stopped."""
        return self._task is not None and not self._task.done()

    def prepare(self, *, sweep: bool = True) -> None:
        if not self.folder.is_dir():
            raise FolderError(f"the hot folder {self.folder} does not exist (or is not a folder)")
        for directory in (self.places.sent, self.places.failed, self.places.processing):
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FolderError(f"cannot make {directory}: {exc.strerror}") from None
        # Results a crash left half written (they are written again). Before the notifier
        # starts, so that none it is writing now is taken for one.
        if sweep:
            sweep_temporaries([self.places.sent, self.places.failed, self.places.processing])

    async def start(self, box: ClaimBox) -> None:
        self._box = box
        self._loop = asyncio.get_running_loop()
        if not await asyncio.to_thread(same_file_system, self.folder, box.root):
            log.warning(
                "hot folder on another file system than the spool path=%s spool=%s: files "
                "are copied, flushed to disk and removed instead of renamed",
                self.folder,
                box.root,
            )
        if self.settings.mode == "inotify":
            # Start watching first, then list: a file dropped in between is seen twice
            # rather than not at all.
            self._inotify = InotifyWatch(
                self.folder, self._ours, self._loop, self._signalled, self._subfolder_came
            )
            await asyncio.to_thread(self._inotify.start)
        self._task = asyncio.create_task(self._run(), name=f"hotfolder {self.folder}")
        log.info("hot folder watching path=%s mode=%s", self.folder, self.settings.mode)

    async def stop(self) -> None:
        """Take no new file; let the batch in hand finish."""
        self._stopping = True
        self._changed.set()
        if self._inotify is not None:
            await asyncio.to_thread(self._inotify.stop)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    def retune(self, settings: FolderSettings, policy: NumberPolicy) -> None:
        """Take new options that need no new watch (see RETUNABLE); on the loop."""
        self.settings = settings
        self._defaults = _defaults(settings, policy)  # one object: a batch sees old or new
        self.rescan_now()  # and the next listing is timed by the new interval

    def rescan_now(self) -> None:
        """List the folder at once (after an inotify overflow; tests use it too)."""
        self._rescan_at = 0.0
        self._changed.set()

    def overflowed(self) -> None:
        """From any thread: inotify events were lost."""
        self._overflowed = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(self.rescan_now)

    def _signalled(self, signals: Signals) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for path, signal in signals:
            self._ready.signal(path, signal, now)
        self._changed.set()

    def _subfolder_came(self, _name: str) -> None:
        self.rescan_now()

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()

        async def cycle() -> bool:
            await self._cycle(loop.time())
            return False

        async def idle() -> float:
            return self._seconds_to_next(loop.time())

        await run_loop(
            cycle,
            idle,
            self._changed,
            log=log,
            failed=f"hot folder cycle failed path={self.folder}",
            stopping=lambda: self._stopping,
            pause_after_failure=_ERROR_PAUSE,
        )

    async def _cycle(self, now: float) -> None:
        if now >= self._rescan_at:
            await self._rescan(now)
        loop = asyncio.get_running_loop()
        due = self._ready.due_checks(now)
        if due:
            began = loop.time()
            found = await asyncio.to_thread(look_at, self.folder, due)
            for path in due:
                sig = found.get(path)
                if sig is None:
                    self._ready.vanished(path, began)
                else:
                    self._ready.listed(path, sig, began)
        while not self._stopping and (taken := self._ready.take(loop.time(), BATCH)):
            pending = self._ready.pending()
            try:
                work = await asyncio.to_thread(self._handle, taken, pending, loop.time())
            except Exception:
                # Offer the files again soon; a claim left half done is finished by the
                # recovery of the rescan.
                retry_at = loop.time() + _ERROR_PAUSE
                for item in taken:
                    self._ready.hold(item, retry_at)
                self._rescan_at = min(self._rescan_at, retry_at)
                raise
            self._note(work, loop.time())
            if work.queued:
                assert self._box is not None
                await asyncio.to_thread(self._box.write_statuses, work.outcomes)

    def _seconds_to_next(self, now: float) -> float:
        moments = [self._rescan_at]
        deadline = self._ready.next_deadline()
        if deadline is not None:
            moments.append(deadline)
        return max(0.0, min(moments) - now)

    async def _rescan(self, now: float) -> None:
        if self._overflowed:
            self._overflowed = False
            self._ready.reset_writing(now)
        assert self._box is not None
        outcomes = await asyncio.to_thread(self._box.recover, self.folder)
        if outcomes:
            await asyncio.to_thread(after_claims, outcomes)
            if any(isinstance(o, Queued) for o in outcomes):
                self._wake()
                await asyncio.to_thread(self._box.write_statuses, outcomes)
        listed_at = asyncio.get_running_loop().time()  # the listing sees the folder as of now
        listing, subfolders = await asyncio.to_thread(list_candidates, self.folder, self._ours)
        if self._inotify is not None:
            await asyncio.to_thread(self._inotify.watch_subfolders, subfolders)
        missed = [path for path in listing if path not in self._ready]
        if missed and self._inotify is not None and self.rescans:
            log.info(
                "rescan found files not seen by events path=%s files=%d", self.folder, len(missed)
            )
        self.rescans += 1
        for path, sig in listing.items():
            self._ready.listed(path, sig, listed_at)
        covered = {"", *subfolders}
        self._ready.forget_missing(listing, lambda path: parent(path) in covered, listed_at)
        interval = self.settings.poll_interval if self.settings.mode == "poll" else None
        every = interval or self.settings.rescan_interval
        done = asyncio.get_running_loop().time()
        self._rescan_at = done + max(every, timedelta(milliseconds=10)).total_seconds()

    def _note(self, work: _Work, now: float) -> None:
        self.batches += 1
        for taken, until in work.waits:
            self._ready.hold(taken, until)
        for path, sig in work.changed:
            if sig is None:
                self._ready.recheck(path, now)
            else:
                self._ready.listed(path, sig, now)
        if work.queued:
            self._wake()
        if any(isinstance(o, NotTaken) and o.why == "stuck" for o in work.outcomes):
            # A full disk or a read-only folder: look again soon, not at the next rescan.
            self._rescan_at = min(self._rescan_at, now + _STUCK_RETRY)

    # ------------------------------------------------------------------ a batch (thread)

    def _handle(self, taken: Sequence[Taken], pending: set[str], now: float) -> _Work:
        assert self._box is not None
        work = _Work()
        claims: list[DropClaim] = []
        by_folder: dict[str, list[Taken]] = {}
        for item in taken:
            by_folder.setdefault(parent(item.path), []).append(item)
        statuses = self._box.status_names(self.places)
        defaults = self._defaults  # a reload may set new ones meanwhile: one batch, one set
        for folder, items in by_folder.items():
            claims.extend(self._plan_folder(folder, items, pending, now, work, statuses, defaults))
        work.outcomes = self._box.take(self.places, claims)
        for outcome in work.outcomes:
            if isinstance(outcome, NotTaken) and outcome.why == "changed":
                work.changed.extend((f.source, None) for f in outcome.claim.documents)
        after_claims(work.outcomes)
        return work

    def _plan_folder(
        self,
        folder: str,
        items: list[Taken],
        pending: set[str],
        now: float,
        work: _Work,
        statuses: set[str],
        defaults: Defaults,
    ) -> list[DropClaim]:
        assert self._box is not None
        directory = self.folder / folder if folder else self.folder
        try:
            entries, signatures = list_dir(directory)
        except FileNotFoundError:
            return []  # the sub-folder went away with its files
        ready: dict[str, float] = {}
        offered: dict[str, Taken] = {}
        for item in items:
            name = item.path.rpartition("/")[2]
            if name not in entries:
                continue
            if item.signature is not None and signatures[name] != item.signature:
                work.changed.append((item.path, signatures[name]))  # written to meanwhile
                continue
            ready[name], offered[name] = item.ready_since, item
        prefix = f"{folder}/" if folder else ""
        view = FolderView(
            folder=folder,
            entries=entries,
            ready=ready,
            pending={p.removeprefix(prefix) for p in pending if parent(p) == folder},
            sidecars={n: read_sidecar(directory / n) for n in ready if is_sidecar(n)},
            heads={
                n: head(directory / n)
                for n in ready
                if not is_sidecar(n) and entries[n].kind == "file"
            },
        )
        claims = []
        for action in plan(view, defaults, now):
            if isinstance(action, Drop):
                claim = self._box.new_claim(self.places, folder, action, signatures, statuses)
                claims.append(claim)
            elif isinstance(action, Refuse):
                self._refuse(directory, prefix, action)
            elif isinstance(action, Wait) and action.name in offered:
                work.waits.append((offered[action.name], action.until))
        return claims

    def _refuse(self, directory: Path, prefix: str, action: Refuse) -> None:
        assert self._box is not None
        files = [(directory / n, n) for n in action.names]
        if self._box.shared:
            # Set aside first, as a claim: of the instances sharing the folder, the one
            # that has the file refuses it; the others pass over it.
            aside = [(self._box.set_aside(self.folder, prefix + n), n) for n in action.names]
            files = [(path, n) for path, n in aside if path is not None]
            if not files:
                return
        placed = refuse(
            self.places,
            files,
            action.code,
            action.reason,
            dropped_as=prefix + action.names[0],
            help_text=action.help,
        )
        if placed is None and self._box.shared:
            self._box.put_aside_back()  # failed/ cannot be written now: tried again later


def _defaults(settings: FolderSettings, policy: NumberPolicy) -> Defaults:
    return Defaults(
        policy=policy,
        max_file_size=settings.max_file_size,
        sidecar_wait=settings.sidecar_wait.total_seconds(),
        cover_to=settings.cover_to or None,
        cover_from=settings.cover_from or None,
        cover_message=settings.cover_message or None,
        notify=settings.notify or None,
    )
