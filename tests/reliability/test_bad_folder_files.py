"""Bad files in a hot folder: each is refused into failed/ with a reason, or left alone, as
docs/hotfolder.md says; the daemon never blocks on one, and a good file dropped with them
is faxed.

tests/intake/folder/test_runner.py already proves (inotify mode, top level): a symlink to a
file outside the folder, a FIFO document, an empty file, a .pdf that is no PDF, a sidecar
listing ../x. Here: symlinks to a file inside and to a directory named like a number,
FIFOs as sidecars and in number sub-folders, both watching modes, directories named like
files, an empty sidecar, odd Unicode names, unreadable files (a daemon without
capabilities in a child process: as root, chmod 000 alone would not stop it reading), and
the longest names a file system allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faxgate import metrics
from faxgate.app import Daemon, started
from faxgate.domain.jobs import JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.settings import FolderSettings
from tests import peers
from tests.conftest import pdf_document, wait_for
from tests.daemon import CALLBACK_TOKEN, fast_settings

QUICK: dict[str, Any] = {"stable_for": 0.2, "sidecar_wait": 0.5, "rescan_interval": 3600}
PDF = pdf_document(1)
NAME_MAX = 255  # bytes in one name on Linux file systems: a 300-character name cannot exist


@contextlib.asynccontextmanager
async def watching(tmp_path: Path, **folder: Any) -> AsyncIterator[Daemon]:
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    settings = fast_settings(tmp_path / "state").model_copy(
        update={"folders": [FolderSettings(path=outbox, **{**QUICK, **folder})]}
    )
    async with started(settings) as daemon:
        yield daemon


def read(path: Path) -> str | None:
    try:
        return path.read_text() or None
    except FileNotFoundError:
        return None


async def reason(outbox: Path, name: str) -> str:
    text: str = await wait_for(
        lambda: read(outbox / "failed" / f"{name}.reason.txt"), what=f"failed/{name}.reason.txt"
    )
    return text


async def sent(outbox: Path, name: str) -> dict[str, Any]:
    def result() -> dict[str, Any] | None:
        text = read(outbox / "sent" / f"{name}.result.json")
        return json.loads(text) if text else None

    found: dict[str, Any] = await wait_for(result, timeout=20, what=f"sent/{name}.result.json")
    return found


def numbers_faxed(daemon: Daemon) -> set[str]:
    return {job.to_number for job in daemon.store.recent_jobs(100)}


# ---------------------------------------------------------------------------- links, FIFOs


ODD_NAMES = [
    "14155550139_\u202eevil\u202c.pdf",  # right-to-left override
    "14155550140_new\nline.pdf",
    "14155550141_\U0001f4e0 fax.pdf",
    "14155550142_e\u0301\u0300 combining.pdf",
    "14155550144_" + "\u00e9" * 100 + ".pdf",  # 200 bytes of two-byte characters
]


@pytest.mark.parametrize("mode", ["inotify", "poll"])
async def test_links_fifos_directories_and_odd_names(tmp_path: Path, mode: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "14155550133.pdf").write_bytes(PDF)
    async with watching(tmp_path, mode=mode, poll_interval=0.1) as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / "14155550131_real.pdf").write_bytes(PDF)
        os.symlink("14155550131_real.pdf", outbox / "14155550130_inside.pdf")
        os.symlink(elsewhere, outbox / "+14155550132")  # a "number folder" that is a link
        os.mkfifo(outbox / "fifo.pdf.json")  # a FIFO sidecar, its document beside it
        (outbox / "fifo.pdf").write_bytes(PDF)
        os.mkfifo(outbox / "batch.json")  # a FIFO where a batch sidecar would be
        (outbox / "+14155550134").mkdir()
        os.mkfifo(outbox / "+14155550134" / "pipe.pdf")
        (outbox / "empty.pdf.json").write_bytes(b"")
        (outbox / "empty.pdf").write_bytes(PDF)
        (outbox / "14155550135.pdf").mkdir()  # a directory named like a file
        (outbox / "14155550135.pdf" / "14155550136_inner.pdf").write_bytes(PDF)
        (outbox / "+14155550137" / "deeper.pdf").mkdir(parents=True)  # two levels down
        (outbox / "+14155550137" / "deeper.pdf" / "14155550138.pdf").write_bytes(PDF)
        for name in ODD_NAMES:
            (outbox / name).write_bytes(PDF)
        (outbox / "14155550199_good.pdf").write_bytes(PDF)

        assert "symbolic link" in await reason(outbox, "14155550130_inside.pdf")
        assert "symbolic link" in await reason(outbox, "+14155550132")
        assert "the sidecar is not a regular file" in await reason(outbox, "fifo.pdf")
        assert "the sidecar is not a regular file" in await reason(outbox, "batch.json")
        assert "pipe.pdf is not a regular file" in await reason(outbox, "pipe.pdf")
        assert "not valid JSON" in await reason(outbox, "empty.pdf")
        await sent(outbox, "14155550199_good.pdf")
        await sent(outbox, "14155550131_real.pdf")
        await sent(outbox, "14155550136_inner.pdf")
        for name in ODD_NAMES:
            result = await sent(outbox, name)
            assert result["file"] == name

        # Links are moved as themselves, never followed; what is not taken stays.
        assert (outbox / "failed" / "14155550130_inside.pdf").is_symlink()
        assert (outbox / "failed" / "+14155550132").is_symlink()
        assert (elsewhere / "14155550133.pdf").read_bytes() == PDF
        assert (outbox / "failed" / "fifo.pdf.json").is_fifo()
        assert (outbox / "14155550135.pdf").is_dir()
        assert (outbox / "+14155550137" / "deeper.pdf" / "14155550138.pdf").exists()
        faxed = numbers_faxed(daemon)
        assert not {"+14155550133", "+14155550134", "+14155550138"} & faxed
        assert {"+14155550131", "+14155550136", "+14155550199"} <= faxed
        async with httpx.AsyncClient(timeout=10) as http:
            health = await http.get(f"http://127.0.0.1:{daemon.http.port}/healthz")
        assert health.status_code == 200
    # ... and the stop was not held up by a FIFO either (the context exited).


# ---------------------------------------------------------------------------- unreadable


def unprivileged() -> list[str]:
    """The command prefix that runs faxgate where chmod 000 keeps it out of a file."""
    if os.geteuid() != 0:
        return []
    setpriv = peers.command("setpriv")
    # Root without capabilities is bound by file modes like anyone else.
    return [setpriv, "--bounding-set=-all", "--inh-caps=-all", "--"]


@contextlib.asynccontextmanager
async def unprivileged_daemon(
    tmp_path: Path, sandbox: Sandbox, http_port: int
) -> AsyncIterator[Callable[[], Awaitable[bool]]]:
    """`faxgate run` in a child process that file modes apply to, watching tmp_path/outbox;
    yields a check that it is healthy. It must stop cleanly."""
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGATE_")}
    env |= {
        "FAXGATE_STATE_DIR": str(tmp_path / "state"),
        "FAXGATE_PROVIDER__BASE_URL": sandbox.base_url,
        "FAXGATE_HTTP__LISTEN": f"127.0.0.1:{http_port}",
        "FAXGATE_HTTP__CALLBACK_TOKEN": CALLBACK_TOKEN,
        "FAXGATE_SMTP__LISTEN": "127.0.0.1:0",
        "FAXGATE_POLLING__TICK": "0.1",
        "FAXGATE_POLLING__FIRST_INTERVAL": "0.2",
        "FAXGATE_FOLDERS": json.dumps([{"path": str(outbox), **QUICK}]),
    }
    log = tmp_path / "daemon.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *unprivileged(), sys.executable, "-m", "faxgate", "run",
            env=env, stdout=output, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip

    async def healthy() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"faxgate exited:\n{log.read_text()}")
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                answer = await http.get(f"http://127.0.0.1:{http_port}/healthz")
        except httpx.TransportError:
            return False
        return answer.status_code == 200

    try:
        await wait_for(healthy, timeout=20, what="faxgate to answer /healthz")
        yield healthy
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
    assert process.returncode == 0, log.read_text()


def drop_unreadable(outbox: Path, *names: str) -> None:
    for name in names:
        (outbox / name).write_bytes(PDF if name.endswith(".pdf") else b"text")
        (outbox / name).chmod(0)


async def test_unreadable_files_are_refused_and_the_rest_goes(
    tmp_path: Path, sandbox: Sandbox, unused_tcp_port: int
) -> None:
    outbox = tmp_path / "outbox"
    async with unprivileged_daemon(tmp_path, sandbox, unused_tcp_port) as healthy:
        drop_unreadable(outbox, "14155550150_locked.pdf", "14155550151_locked.txt")
        (outbox / "14155550152_good.pdf").write_bytes(PDF)
        await sent(outbox, "14155550152_good.pdf")
        await reason(outbox, "14155550150_locked.pdf")
        await reason(outbox, "14155550151_locked.txt")
        assert (outbox / "failed" / "14155550151_locked.txt").stat().st_mode & 0o777 == 0
        assert await healthy()
    leftovers = list((tmp_path / "state" / "spool" / "folder").glob("*.txt"))
    assert leftovers == [], "nothing of the refused file stays in the spool"


@contextlib.contextmanager
def unreadable(*paths: Path) -> Iterator[None]:
    """os.open refuses these files (by inode, so under any name they are moved to), as it
    does for a process without the right; faxgate opens documents only with os.open."""
    locked = {(info.st_dev, info.st_ino) for info in map(os.stat, paths)}
    real_open = os.open

    def guarded(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            info = None
        if info is not None and (info.st_dev, info.st_ino) in locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", guarded)
        yield


async def test_an_unreadable_file_is_refused_saying_so(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    names = ["14155550160_locked.pdf", "14155550161_locked.txt"]
    for name in names:
        (outbox / name).write_bytes(PDF)
    (outbox / "14155550162_good.pdf").write_bytes(PDF)
    with unreadable(*(outbox / name for name in names)):
        async with watching(tmp_path) as daemon:
            await sent(outbox, "14155550162_good.pdf")
            reasons = [await reason(outbox, name) for name in names]
    for text in reasons:  # not "does not look like a PDF", nor faxgate's own paths
        assert "cannot be read" in text, text
        assert str(daemon.settings.state_dir) not in text, text


# ---------------------------------------------------------------------------- long names


def long_name(prefix: str, size: int = NAME_MAX) -> str:
    return prefix + "x" * (size - len(prefix) - 4) + ".pdf"


def test_a_300_character_name_cannot_exist(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="too long") as refused:
        (tmp_path / ("14155550170_" + "x" * 284 + ".pdf")).write_bytes(PDF)
    assert refused.value.errno == errno.ENAMETOOLONG
    (tmp_path / long_name("14155550170_")).write_bytes(PDF)  # 255 bytes is the most


def cycle_failed(caplog: pytest.LogCaptureFixture) -> bool:
    return any("hot folder cycle failed" in record.getMessage() for record in caplog.records)


async def good_file_faxed(daemon: Daemon, caplog: pytest.LogCaptureFixture, number: str) -> None:
    """Wait until the batch is handled (the good file to `number` queued, or the cycle
    failed), then check that the good file was queued."""

    def handled() -> bool:
        return number in numbers_faxed(daemon) or cycle_failed(caplog)

    await wait_for(handled, what="the batch handled")
    assert number in numbers_faxed(daemon)


async def test_a_refused_long_name_does_not_hold_up_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A name too long to take a suffix (NAME.reason.txt passes 255 bytes) is refused
    all the same, and a good file in the same batch is faxed."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    # Both there at start: one listing, one batch.
    (outbox / long_name("12345_")).write_bytes(PDF)  # a bad number: refused at once
    (outbox / "14155550171_good.pdf").write_bytes(PDF)
    with caplog.at_level(logging.ERROR, logger="faxgate.hotfolder"):
        async with watching(tmp_path) as daemon:
            await good_file_faxed(daemon, caplog, "+14155550171")

            def refusal() -> str | None:
                found = list((outbox / "failed").glob("12345_*.reason.txt"))
                return found[0].read_text() if found else None

            assert "too short" in await wait_for(refusal, what="the reason in failed/")
            assert not (outbox / long_name("12345_")).exists()


async def test_a_long_name_that_is_faxed_gets_its_result(tmp_path: Path) -> None:
    """A name of 250 bytes is faxed and its result written (under a name that fits)."""
    name = long_name("14155550172_", 250)
    async with watching(tmp_path) as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / name).write_bytes(PDF)

        def results() -> list[Path]:
            return list((outbox / "sent").glob("14155550172_*.result.json"))

        (found,) = await wait_for(results, timeout=20, what="its result in sent/")
        assert json.loads(found.read_text())["outcome"] == "sent"


async def test_a_name_that_is_not_utf8_does_not_hold_up_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that is not UTF-8 cannot go into the claim record as it is: the good file
    beside it is faxed all the same."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    not_utf8 = os.open(
        os.path.join(os.fsencode(outbox), b"14155550173_\xff\xfe.pdf"), os.O_WRONLY | os.O_CREAT
    )
    os.write(not_utf8, PDF)
    os.close(not_utf8)
    (outbox / "14155550174_good.pdf").write_bytes(PDF)
    with caplog.at_level(logging.ERROR, logger="faxgate.hotfolder"):
        async with watching(tmp_path) as daemon:
            await good_file_faxed(daemon, caplog, "+14155550174")


def submissions(result: str) -> float:
    value = metrics.REGISTRY.get_sample_value("faxgate_submissions_total", {"result": result})
    return value or 0.0


async def test_a_name_with_control_characters_is_faxed(tmp_path: Path) -> None:
    """Control characters in a name (ESC, DEL) never reach the provider's multipart
    headers, where the sandbox refused them with a 500 and every send paused."""
    retries = submissions("retry")
    async with watching(tmp_path) as daemon:
        outbox = daemon.settings.folders[0].path
        (outbox / "14155550175_\x1b[31m\x7f.pdf").write_bytes(PDF)

        def sent_or_retried() -> bool:
            jobs = daemon.store.recent_jobs(10)
            return any(j.state is JobState.SENT for j in jobs) or submissions("retry") > retries

        await wait_for(sent_or_retried, what="the fax sent or tried again")
        assert [job.state for job in daemon.store.recent_jobs(10)] == [JobState.SENT]
