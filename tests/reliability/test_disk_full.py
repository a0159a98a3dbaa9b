"""A full disk, for real: the state directory on a small tmpfs, filled to the last byte.

Mail is answered 451 and nothing of it is kept; a dropped file stays where it was; a store
that cannot grow (SQLITE_FULL) does the same. Once space is freed, the same mail is taken
and the same file too, and each is faxed once.

These tests mount file systems, so they run as root (or with CAP_SYS_ADMIN); without, they
fail and say so. Every mount is undone at teardown, whatever happened.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from faxgate.app import Daemon, started
from faxgate.domain.jobs import Job, JobState
from faxgate.hellofax.sandbox import Sandbox
from faxgate.settings import FolderSettings, Settings
from tests.conftest import pdf_document, wait_for
from tests.daemon import callbacks_here, fast_settings, settled
from tests.intake.folder.test_runner import result
from tests.intake.smtp.testing import FAX_DOMAIN, SENDER, fax_mail, smtp_client, smtp_port
from tests.mounts import Mounts, mounts

__all__ = ["Mounts", "mounts"]  # the fixture and its type, for the other reliability tests

QUICK_FOLDER: dict[str, Any] = {"stable_for": 0.2, "sidecar_wait": 0.5, "rescan_interval": 0.3}


def fill(directory: Path) -> Path:
    """A file that takes every free byte of the file system `directory` is on."""
    filler = directory / "filler"
    chunk = bytes(1 << 20)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)  # the last one writes what fits, the next one fails
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


# ---------------------------------------------------------------------------- helpers


def settings_for(
    state: Path, sandbox: Sandbox, outbox: Path | None = None, **folder: Any
) -> Settings:
    """A daemon on the test's sandbox (whose state is not on the small disk), reading mail
    in a thread, watching `outbox` if given."""
    settings = fast_settings(
        state,
        provider={"base_url": sandbox.base_url},
        smtp={"listen": "127.0.0.1:0", "reader_processes": 0},
    )
    if outbox is None:
        return settings
    folders = [FolderSettings(path=outbox, **{**QUICK_FOLDER, **folder})]
    return settings.model_copy(update={"folders": folders})


def logged(caplog: pytest.LogCaptureFixture, *words: str) -> str | None:
    """The first log message holding every one of `words`."""
    for record in caplog.records:
        message = record.getMessage()
        if all(word in message for word in words):
            return message
    return None


def listing(folder: Path) -> list[str]:
    """Every name in a folder, hidden and temporary ones too."""
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def jobs_of(daemon: Daemon) -> list[Job]:
    return daemon.store.recent_jobs(50)


def sends_to(sandbox: Sandbox) -> Counter[str]:
    return Counter(t.to for t in sandbox.inspect() if not t.is_inbound)


def stage(staging: Path, name: str) -> Path:
    """A PDF written beside the hot folder, to be moved in whole as a scanner does (a move
    needs no room, so it can be dropped on a full disk)."""
    staging.mkdir(exist_ok=True)
    written = staging / name
    written.write_bytes(pdf_document(1))
    return written


def drop(staged: Path, outbox: Path) -> Path:
    os.rename(staged, outbox / staged.name)
    return outbox / staged.name


async def send_mail(daemon: Daemon, number: str) -> tuple[int, str]:
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, [f"{number}@{FAX_DOMAIN}"], fax_mail(number))
    return reply.code, reply.status


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Daemon]:
    """The daemon started, its sent faxes confirmed by callbacks (not presumed)."""
    async with started(settings) as daemon:
        await callbacks_here(daemon)
        yield daemon


def database_alone(mounts: Mounts, tmp_path: Path) -> tuple[Path, Path]:
    """tmp_path/state, whose database (and its WAL) is alone on a small disk of its own,
    through a symlink SQLite follows; and that disk."""
    disk = mounts.tmpfs(tmp_path / "db", "8m")
    state = tmp_path / "state"
    state.mkdir()
    (state / "faxgate.sqlite3").symlink_to(disk / "faxgate.sqlite3")
    return state, disk


async def answered_451(daemon: Daemon, number: str) -> None:
    """Mail to `number` is refused for now (451 4.3.x): the sender keeps it and tries again."""
    code, status = await send_mail(daemon, number)
    assert (code, status[:4]) == (451, "4.3."), status


async def why_not_taken(caplog: pytest.LogCaptureFixture, name: str, taken: str = "taken") -> str:
    """The log line that says why the file `name` was not taken (or queued)."""
    why: str = await wait_for(
        lambda: logged(caplog, "files not taken", name),
        what=f"a log line saying why the file was not {taken}",
    )
    return why


# ---------------------------------------------------------------------------- the tests


async def test_a_full_spool_answers_451_and_takes_the_mail_once_there_is_room(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "4m")
    async with running(settings_for(disk / "state", sandbox)) as daemon:
        spool = daemon.settings.spool_dir
        before = listing(spool)
        filler = fill(disk)

        await answered_451(daemon, "14155550300")
        assert listing(spool) == before, "nothing half-stored: no document, no temporary file"
        assert jobs_of(daemon) == []
        assert logged(caplog, "smtp message not stored", "no space is left on the disk")

        filler.unlink()
        assert (await send_mail(daemon, "14155550300"))[0] == 250
        (job,) = jobs_of(daemon)
        (done,) = await settled(daemon, [job])
    assert done.state is JobState.SENT
    assert sends_to(sandbox)["14155550300"] == 1


async def test_a_full_disk_leaves_a_dropped_file_in_place_until_there_is_room(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    # The outbox on the spool's file system, as claiming by hard link likes it.
    disk = mounts.tmpfs(tmp_path / "disk", "4m")
    outbox = disk / "outbox"
    outbox.mkdir()
    async with running(settings_for(disk / "state", sandbox, outbox)) as daemon:
        claims = daemon.settings.spool_dir / "folder"
        staged = stage(disk / "staging", "14155550301_letter.pdf")
        filler = fill(disk)
        dropped = drop(staged, outbox)

        why = await why_not_taken(caplog, "14155550301_letter.pdf")
        assert "no space is left on the disk" in why
        assert "left in the folder" in why
        assert dropped.exists(), "left where it was dropped"
        assert listing(outbox / "failed") == []
        assert listing(claims) == [], "no claim record, no copy in the spool"
        assert jobs_of(daemon) == []

        filler.unlink()
        done = await result(outbox, dropped.name)
        assert not dropped.exists()
    assert done["outcome"] == "sent"
    assert sends_to(sandbox)["14155550301"] == 1


async def test_a_store_that_cannot_grow_answers_451_and_leaves_files_in_place(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    # The database alone on a small disk; the spool and the hot folder have room.
    state, database_disk = database_alone(mounts, tmp_path)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    async with running(settings_for(state, sandbox, outbox)) as daemon:
        spool = daemon.settings.spool_dir
        before = listing(spool)
        filler = fill(database_disk)

        await answered_451(daemon, "14155550302")
        assert listing(spool) == before, "the spooled message and document were removed"
        assert logged(caplog, "smtp message not stored", "database cannot grow")

        dropped = drop(stage(tmp_path / "staging", "14155550303_letter.pdf"), outbox)
        inode = dropped.stat().st_ino
        why = await why_not_taken(caplog, "14155550303_letter.pdf")
        assert "database cannot grow" in why
        assert "left in the folder" in why
        assert dropped.stat().st_ino == inode, "the very file, put back where it was"
        assert listing(outbox / "failed") == []
        assert [p for p in listing(spool / "folder") if not p.endswith(".placed.json")] == []
        assert jobs_of(daemon) == []

        filler.unlink()
        assert (await send_mail(daemon, "14155550302"))[0] == 250
        done = await result(outbox, dropped.name)
        await settled(daemon, jobs_of(daemon))
    assert done["outcome"] == "sent"
    sent = sends_to(sandbox)
    assert (sent["14155550302"], sent["14155550303"]) == (1, 1)


@pytest.fixture(autouse=True)
def _warnings_captured(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="faxgate")


async def test_a_claim_that_cannot_go_back_is_kept_and_finished_once_there_is_room(
    tmp_path: Path, sandbox: Sandbox, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    # The hot folder on a file system of its own: a claimed file is a copy in the spool,
    # which cannot be linked back. It stays claimed (its record kept) and is queued by the
    # recovery once the store has room, still once.
    state, database_disk = database_alone(mounts, tmp_path)
    outbox = mounts.tmpfs(tmp_path / "outbox", "4m")
    async with running(settings_for(state, sandbox, outbox)) as daemon:
        claims = daemon.settings.spool_dir / "folder"
        filler = fill(database_disk)
        dropped = drop(stage(outbox / ".staging", "14155550304_letter.pdf"), outbox)

        why = await why_not_taken(caplog, "14155550304_letter.pdf", "queued")
        assert "claimed and kept in the spool" in why
        assert not dropped.exists()
        assert [p for p in listing(claims) if p.endswith(".claim.json")], "the record stays"
        assert [p for p in listing(claims) if p.endswith(".pdf")], "the file is in the spool"
        assert jobs_of(daemon) == []

        filler.unlink()
        done = await result(outbox, dropped.name)
        assert [p for p in listing(claims) if p.endswith((".claim.json", ".pdf"))] == []
    assert done["outcome"] == "sent"
    assert sends_to(sandbox)["14155550304"] == 1
