"""The hot folders as one: prepared from the settings, started, reloaded (what a
change needs), stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.folder.claim_records import Queued
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.runner import FolderError, FolderWatcher, after_claims
from faxgate.intake.folder.shared import LocksUnsupported, SharedClaims, check_locks
from faxgate.intake.folder.status import Places
from faxgate.intake.folder.watcher import overflow_alarm
from faxgate.settings import FolderSettings, Settings
from faxgate.store import Store

log = logging.getLogger("faxgate.hotfolder")


class HotFolders:
    """Every configured hot folder; `running()` watches them while the context lasts, and
    a reload (`prepare_reload`, then `apply_reload`) changes them meanwhile."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        wake: Callable[[], None],
        *,
        owner: str | None = None,
    ) -> None:
        """`owner`: this instance's name among several sharing the store (None: alone).
        Sharing, each folder is claimed from into a claims folder of this instance's own
        inside it (shared.py), so that instances watching one folder never take a file
        twice."""
        self._store = store
        self._owner = owner
        self._shared: dict[Path, SharedClaims] = {}
        self._wake = wake
        self._spool_dir = settings.spool_dir
        self._policy = settings.numbers.policy()
        # Changed in place only: the overflow alarm holds this very list.
        self.watchers = [
            FolderWatcher(folder, policy=self._policy, wake=wake) for folder in settings.folders
        ]
        self._box: ClaimBox | None = None
        self._changing = asyncio.Lock()  # a reload and the stop, one at a time
        self._running = False

    @classmethod
    def prepare(
        cls,
        settings: Settings,
        store: Store,
        wake: Callable[[], None],
        *,
        owner: str | None = None,
    ) -> HotFolders:
        """Check every folder and make its result folders; FolderError when one is unusable."""
        folders = cls(settings, store, wake, owner=owner)
        for watcher in folders.watchers:
            watcher.prepare()
            if owner is not None:
                try:
                    check_locks(watcher.folder)
                except LocksUnsupported as exc:
                    raise FolderError(
                        f"the hot folder {watcher.folder} cannot be shared by several "
                        f"instances: {exc}"
                    ) from None
        return folders

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HotFolders]:
        if self.watchers:
            box = await self._open_box()
            outcomes = await asyncio.to_thread(box.recover)
            await asyncio.to_thread(after_claims, outcomes)
            if any(isinstance(o, Queued) for o in outcomes):
                self._wake()
                await asyncio.to_thread(box.write_statuses, outcomes)
        with overflow_alarm(self.watchers):
            try:
                for watcher in self.watchers:
                    await watcher.start(await self._box_for(watcher))
                self._running = True
                yield self
            finally:
                async with self._changing:
                    self._running = False
                    for watcher in reversed(self.watchers):
                        await watcher.stop()  # a watcher never started has nothing to stop
                    for shared in self._shared.values():
                        shared.close()
                    self._shared.clear()

    async def _open_box(self) -> ClaimBox:
        if self._box is None:
            box = await asyncio.to_thread(ClaimBox, self._spool_dir, self._store)
            if not self._running:  # at start: nothing is claiming or placing yet
                await asyncio.to_thread(box.cleanup)
            self._box = box
        return self._box

    async def _box_for(self, watcher: FolderWatcher) -> ClaimBox:
        """Where `watcher` claims into: the spool's claims folder, or sharing the store,
        this instance's own in the folder."""
        if self._owner is None:
            return await self._open_box()
        shared = self._shared.get(watcher.folder)
        if shared is None:
            await self._open_box()  # the spool's, for claims it holds from before
            try:
                shared = await asyncio.to_thread(
                    SharedClaims.open,
                    watcher.folder,
                    self._owner,
                    lambda root: ClaimBox(self._spool_dir, self._store, root=root),
                )
            except LocksUnsupported as exc:
                raise FolderError(
                    f"the hot folder {watcher.folder} cannot be shared by several instances: {exc}"
                ) from None
            except OSError as exc:
                raise FolderError(
                    f"cannot make the claims folder in {watcher.folder}: {exc.strerror}"
                ) from None
            self._shared[watcher.folder] = shared
            log.info(
                "hot folder shared with other instances path=%s claims=%s",
                watcher.folder,
                shared.box.root,
            )
        return shared.box

    def _let_go(self, watcher: FolderWatcher) -> None:
        shared = self._shared.pop(watcher.folder, None)
        if shared is not None:
            shared.close()

    # ------------------------------------------------------------------ reloading

    def prepare_reload(
        self, folders: Sequence[FolderSettings], policy: NumberPolicy
    ) -> FolderReload:
        """What a reload to `folders` does, checked before anything changes: FolderError when
        a folder to watch anew cannot be used. Blocking (makes result folders): a thread."""
        kept = {watcher.folder: watcher for watcher in self.watchers}
        wanted: list[FolderWatcher] = []
        change = FolderReload(policy=policy, watchers=wanted)
        for settings in folders:
            old = kept.pop(Places.of(settings).folder, None)
            how = (
                "start"
                if old is None
                else how_to_apply(old.settings, self._policy, settings, policy)
            )
            if how == "keep":
                assert old is not None
                wanted.append(old)
                continue
            if how == "retune":
                assert old is not None
                change.retune.append((old, settings))
                wanted.append(old)
                continue
            watcher = FolderWatcher(settings, policy=policy, wake=self._wake)
            # No sweep of temporary files: the notifier may be writing results right now.
            watcher.prepare(sweep=False)
            change.start.append(watcher)
            wanted.append(watcher)
            if old is not None:  # options the watch itself depends on: a new watcher
                change.stop.append(old)
        change.stop.extend(kept.values())  # folders no longer listed
        return change

    async def apply_reload(self, change: FolderReload) -> None:
        """Stop watching folders gone (each finishes the batch it is claiming first), apply
        new options, start watching folders added. A folder that cannot be watched is
        logged and left out; the others go on."""
        async with self._changing:
            if not self._running:
                return  # stopping: nothing to change any more
            for watcher in change.stop:
                await watcher.stop()
                self._let_go(watcher)
                self.watchers.remove(watcher)
                log.info("hot folder no longer watched path=%s", watcher.folder)
            for watcher, settings in change.retune:
                watcher.retune(settings, change.policy)
                log.info("hot folder options changed path=%s", watcher.folder)
            failed: list[FolderWatcher] = []
            if change.start:
                for watcher in change.start:
                    self.watchers.append(watcher)  # listed first: a stop after a cancel stops it
                    try:
                        await watcher.start(await self._box_for(watcher))
                    except Exception as exc:
                        await watcher.stop()
                        self._let_go(watcher)
                        failed.append(watcher)
                        log.error(
                            "hot folder cannot be watched path=%s error=%s", watcher.folder, exc
                        )
            self.watchers[:] = [w for w in change.watchers if w not in failed]
            self._policy = change.policy


@dataclass
class FolderReload:
    """What a reload does to the hot folders (see HotFolders.prepare_reload)."""

    policy: NumberPolicy
    watchers: list[FolderWatcher]  # the folders watched after it, in the settings' order
    start: list[FolderWatcher] = field(default_factory=list)
    stop: list[FolderWatcher] = field(default_factory=list)
    retune: list[tuple[FolderWatcher, FolderSettings]] = field(default_factory=list)


# Options a running watcher takes as they come: what drops default to, how often it lists.
# Any other (mode, stable_for, the result folders) gives the folder a new watcher.
RETUNABLE: Final = frozenset(
    {
        "poll_interval",
        "rescan_interval",
        "sidecar_wait",
        "max_file_size",
        "cover_to",
        "cover_from",
        "cover_message",
        "notify",
    }
)


def how_to_apply(
    old: FolderSettings, old_policy: NumberPolicy, new: FolderSettings, new_policy: NumberPolicy
) -> Literal["keep", "retune", "restart"]:
    """How a folder kept by a reload takes its new options. Pure."""
    changed = {
        name
        for name in type(new).model_fields
        if name != "path" and getattr(old, name) != getattr(new, name)
    }
    if changed - RETUNABLE:
        return "restart"
    if changed or old_policy != new_policy:
        return "retune"
    return "keep"
