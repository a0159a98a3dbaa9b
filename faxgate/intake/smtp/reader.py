"""Reading messages in worker processes, beside the event loop.

Reading a message (MIME parsing, base64, the cover page: faxgate.intake.smtp.message) is
pure CPU: some 4 ms for a 100 KB PDF, seconds for 25 MB. In a thread it would hold the
interpreter lock the event loop needs (other sessions, the dispatcher, callbacks), so it
runs in a small pool of processes ("forkserver": started clean, not copied from the
daemon). `workers = 0` reads in a thread instead (tests, tiny machines).

A worker that dies (say, killed for memory on a huge message) fails only that message
(the client gets 451 and sends again later); the next message gets a fresh pool. A worker
whose daemon is gone (killed with SIGKILL: nobody stops the pool) ends within a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Final, Unpack

from faxgate.intake.smtp.accept import MailToFax
from faxgate.intake.smtp.message import MailOptions, read_mail
from faxgate.workers import end_with, forkserver

log = logging.getLogger("faxgate.smtp")

TASKS_PER_WORKER: Final = 1000  # then a fresh process: whatever a parser leaks goes too


class ReaderFailed(Exception):
    """The worker reading the message died; nothing is known of the message."""


class MessageReader:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def read(self, raw: bytes, **options: Unpack[MailOptions]) -> MailToFax:
        """read_mail, away from the loop; MessageRefused and AddressRefused as read_mail
        raises them."""
        options["faxes"] = list(options["faxes"])  # sent to the worker whole
        call = functools.partial(_read_mail_without_raw, raw, **options)
        if self.workers == 0:
            mail = await asyncio.to_thread(call)
            return replace(mail, raw=raw)
        pool = self._pool or self._start()
        try:
            mail = await asyncio.get_running_loop().run_in_executor(pool, call)
            return replace(mail, raw=raw)
        except BrokenProcessPool as exc:
            if pool is self._pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            log.error("a message reader process died; starting afresh")
            raise ReaderFailed("the process reading the message died") from exc

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        # Imported once in the forkserver, not again in each worker it forks (some 0.2 s
        # of CPU a worker, and a worker is renewed every TASKS_PER_WORKER messages).
        context = forkserver(preload=[read_mail.__module__])
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            max_tasks_per_child=TASKS_PER_WORKER,
            initializer=end_with,
            initargs=(os.getpid(),),
        )
        return self._pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def _read_mail_without_raw(raw: bytes, **options: Unpack[MailOptions]) -> MailToFax:
    """read_mail, sending back all but the raw message, which the daemon still has."""
    return replace(read_mail(raw, **options), raw=b"")
