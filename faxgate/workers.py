"""Work in processes of its own, beside the event loop: started clean from a forkserver
(not copied from the daemon), and ended with the daemon.

Two shapes use it: the SMTP listener's pool of message readers
(faxgate.intake.smtp.reader), and `run_isolated`, one fresh process per call with a cap
on its memory and its time, for work on documents that may be hostile (a decompression
bomb, a PDF that takes minutes to draw): the worst such a document does is end its own
process, which the caller hears as WorkerFailed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from typing import Any, Final, TypeVar

T = TypeVar("T")

WATCH_EVERY: Final = 1.0  # seconds between a worker's looks at its daemon

_preloaded: set[str] = set()


class WorkerFailed(Exception):
    """The worker process failed its task: it raised, ran out of memory or time, or died.
    The message says which in plain words."""


def forkserver(preload: Iterable[str] = ()) -> ForkServerContext:
    """The forkserver context, with `preload` among the modules it imports once.

    There is one forkserver per daemon, started by the first process made from it: the
    modules named before then are imported in it once instead of in each worker.
    """
    context = multiprocessing.get_context("forkserver")
    _preloaded.update(preload)
    context.set_forkserver_preload(sorted(_preloaded))
    return context


def end_with(daemon_pid: int) -> None:
    """In a worker: exit once the daemon is gone, or the forkserver between us."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(WATCH_EVERY)
            try:
                os.kill(daemon_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            if os.getppid() != parent:  # the forkserver ended: so did the daemon
                os._exit(0)

    threading.Thread(target=watch, name="faxgate-daemon-watch", daemon=True).start()


async def run_isolated(
    task: Callable[..., T],
    *args: Any,
    seconds: float,
    memory: int,
    preload: Iterable[str] = (),
) -> T:
    """task(*args) in a fresh process of its own: at most `memory` bytes of address space
    and `seconds` seconds (of CPU, and of the wall clock); WorkerFailed otherwise.

    `task` and its arguments and result cross a pipe, so they are picklable: a
    module-level function, paths rather than open files. Cancelling the call kills the
    process. Besides `preload`, each process imports the program's main module again, as
    multiprocessing does (the `faxgate` script: some 20 ms).
    """
    context = forkserver(preload)
    receiving, sending = context.Pipe(duplex=False)
    cpu = max(1, int(seconds + 0.999))
    process = context.Process(
        target=_child,
        args=(sending, task, args, memory, cpu, os.getpid()),
        name="faxgate-isolated",
        daemon=True,
    )
    try:
        # The first start also starts the forkserver (an interpreter and its imports).
        await asyncio.to_thread(process.start)
        sending.close()
        try:
            async with asyncio.timeout(seconds + 1.0):
                await _readable(receiving)
        except TimeoutError:
            raise WorkerFailed(f"it took longer than {seconds:g} seconds") from None
        try:
            ok, value = receiving.recv()
        except (EOFError, OSError):
            await asyncio.to_thread(process.join, 1.0)  # its exit code says how it ended
            raise WorkerFailed(_death(process)) from None
        if not ok:
            raise WorkerFailed(str(value))
        result: T = value
        return result
    finally:
        receiving.close()
        sending.close()
        if process.pid is not None:
            if process.is_alive():
                process.kill()
            await asyncio.to_thread(process.join, 5.0)
            if process.exitcode is not None:
                process.close()


async def _readable(connection: Connection) -> None:
    """Wait until the pipe has a result or the process ended (end of file)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fd = connection.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _death(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        number = -code
        if number == signal.SIGXCPU:
            return "it took too long (its time ran out)"
        if number == signal.SIGKILL:
            return "it was killed (out of memory?)"
        return f"it crashed ({signal.Signals(number).name})"
    return f"its process ended unexpectedly (exit code {code})"


def _child(
    sending: Connection,
    task: Callable[..., Any],
    args: tuple[Any, ...],
    memory: int,
    cpu: int,
    daemon_pid: int,
) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    # SIGXCPU at the soft limit ends the process even inside C code that never returns
    # to the interpreter.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    end_with(daemon_pid)
    try:
        outcome: tuple[bool, Any] = (True, task(*args))
    except MemoryError:
        outcome = (False, "it needed more memory than it may use")
    except Exception as exc:
        outcome = (False, str(exc) or type(exc).__name__)
    try:
        sending.send(outcome)
    except MemoryError:
        sending.send((False, "it needed more memory than it may use"))
    finally:
        sending.close()
