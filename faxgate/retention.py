"""The daemon's document retention: a pass every [retention] interval (the pass itself:
store/retention.py; the rule: domain/retention.py).

On PostgreSQL every instance runs its own: each marks the due rows it finds (once between
them) and deletes its own spool's files of every document marked removed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from faxgate import metrics
from faxgate.runner import run_loop
from faxgate.settings.retention import RetentionSettings
from faxgate.store import Store
from faxgate.store.retention import PurgeReport, purge

log = logging.getLogger("faxgate.retention")


class Purger:
    """Runs a retention pass at start and then every `interval`."""

    def __init__(
        self, store: Store, spool_dir: Path, settings: Callable[[], RetentionSettings]
    ) -> None:
        self._store = store
        self._spool_dir = spool_dir
        self._settings = settings  # read at each pass: a reload's new values apply
        self._wakeup = asyncio.Event()
        self.passes = 0  # passes done since start

    async def run(self) -> None:
        await run_loop(
            self._cycle,
            self._idle,
            self._wakeup,
            log=log,
            failed="retention pass failed; tried again at the next interval",
        )

    def wake(self) -> None:
        self._wakeup.set()

    async def pass_once(self) -> PurgeReport:
        keep = self._settings().documents
        report = await asyncio.to_thread(purge, self._store, self._spool_dir, keep)
        marked = report.marked
        if marked.inbound:
            metrics.documents_removed.labels(kind="inbound").inc(len(marked.inbound))
        if marked.documents > len(marked.inbound):
            metrics.documents_removed.labels(kind="job").inc(marked.documents - len(marked.inbound))
        return report

    async def _cycle(self) -> bool:
        try:
            await self.pass_once()
        finally:
            self.passes += 1
        return False

    async def _idle(self) -> float:
        return self._settings().interval.total_seconds()
