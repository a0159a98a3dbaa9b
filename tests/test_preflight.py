"""The checks before a start: every problem named at once, in plain words, before anything
runs; folders really written to (read-only mounts, which os.access does not see for root).
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faxgate.app import StartupError, started
from faxgate.hellofax.sandbox import Sandbox
from faxgate.preflight import hot_folder_problems, preflight, summary
from faxgate.settings import FolderSettings, Settings
from faxgate.store import Store
from tests.daemon import fast_settings
from tests.postgres import postgres_server, postgres_url
from tests.reliability.test_disk_full import Mounts, fill, mounts

__all__ = [
    "mounts",
    "postgres_server",
    "postgres_url",
]  # the fixture, shared with the reliability tests


def with_folders(settings: Settings, *folders: FolderSettings) -> Settings:
    return settings.model_copy(update={"folders": list(folders)})


def probes_left(root: Path) -> list[Path]:
    return list(root.rglob(".faxgate-probe*"))


@pytest.fixture
def listening() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_usable_settings_pass_and_make_the_folders(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    inbound: dict[str, Any] = {
        "default_folder": str(tmp_path / "in" / "desk"),
        "routes": [{"name": "sales", "to": "+14155550100", "folder": str(tmp_path / "in/s")}],
    }
    settings = with_folders(
        fast_settings(tmp_path / "state", inbound=inbound),
        FolderSettings(path=outbox, sent_dir=tmp_path / "archive" / "sent"),
    )
    assert preflight(settings) == []
    for made in (
        tmp_path / "state" / "spool" / "folder",
        tmp_path / "state" / "maildir",
        tmp_path / "archive" / "sent",
        outbox / "failed",
        outbox / "processing",
        tmp_path / "in" / "desk",
        tmp_path / "in" / "s",
    ):
        assert made.is_dir(), made
    assert probes_left(tmp_path) == []


async def test_every_problem_is_named_at_once(
    tmp_path: Path, mounts: Mounts, listening: int
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    (read_only / "sent").mkdir()
    mounts.readonly(read_only)
    (tmp_path / "failed-is-a-file").write_text("")
    settings = with_folders(
        fast_settings(
            tmp_path / "state",
            smtp={"listen": f"127.0.0.1:{listening}"},
            inbound={"default_folder": str(read_only / "inbound")},
        ),
        FolderSettings(path=tmp_path / "nowhere"),
        FolderSettings(
            path=tmp_path, sent_dir=read_only / "sent", failed_dir=tmp_path / "failed-is-a-file"
        ),
    )
    problems = preflight(settings)
    assert len(problems) == 5, problems
    expected = [
        f"the hot folder {tmp_path / 'nowhere'} does not exist",
        f"faxgate cannot write in the sent_dir of the hot folder {tmp_path} "
        f"{read_only / 'sent'}: the file system is read-only (under systemd, list the "
        "folder in ReadWritePaths=)",
        f"the failed_dir of the hot folder {tmp_path} {tmp_path / 'failed-is-a-file'} is "
        "not a folder",
        f"[inbound] default_folder {read_only / 'inbound'} does not exist and cannot be made: "
        "the file system is read-only",
        f"the SMTP listener cannot listen on 127.0.0.1:{listening}: the port is in use",
    ]
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start), (problem, start)

    with pytest.raises(StartupError) as raised:
        async with started(settings):
            pytest.fail("started despite the problems")
    message = str(raised.value)
    assert message.startswith("faxgate cannot start, for 5 reasons: (1) the hot folder")
    assert all(problem in message for problem in problems)
    assert not (tmp_path / "state" / "faxgate.sqlite3").exists(), "nothing was started"
    assert probes_left(tmp_path) == []


def test_a_read_only_state_directory(tmp_path: Path, mounts: Mounts) -> None:
    state = tmp_path / "state"
    state.mkdir()
    mounts.readonly(state)
    (problem,) = preflight(fast_settings(state))
    assert problem.startswith(f"faxgate cannot write in the state directory (state_dir) {state}")
    assert "read-only" in problem


async def test_a_second_faxgate_on_the_same_state_directory(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "state")
    async with started(settings):
        assert preflight(settings) == [
            f"another faxgate is already running with the state directory {settings.state_dir}"
        ]
        with pytest.raises(StartupError, match="another faxgate is already running"):
            async with started(settings):
                pass


def test_a_postgresql_store_that_answers_is_no_problem(tmp_path: Path, postgres_url: str) -> None:
    settings = fast_settings(tmp_path / "state", store={"url": postgres_url})
    assert preflight(settings) == []
    assert not settings.database_path.exists()


def test_a_postgresql_store_that_cannot_be_reached_is_named(tmp_path: Path) -> None:
    url = "postgresql://faxgate@127.0.0.1:1/faxgate"
    settings = fast_settings(tmp_path / "state", store={"url": url})
    [problem] = preflight(settings)
    assert problem.startswith(f"the store {url} cannot be reached (store.url): ")


def test_a_postgresql_store_from_a_newer_faxgate_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    Store.open_url(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE faxgate_schema SET version = version + 1")
    settings = fast_settings(tmp_path / "state", store={"url": postgres_url})
    [problem] = preflight(settings)
    assert "was written by a newer faxgate" in problem
    assert "upgrade faxgate" in problem


def test_imap_shares_a_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    """Its ledger is in the store: several instances may watch one mailbox."""
    imap = {"enabled": True, "host": "imap.example.org", "username": "u", "password": "p"}
    settings = fast_settings(
        tmp_path / "state",
        store={"url": postgres_url},
        imap=imap,
        smtp={"allowed_senders": ["*@example.org"]},
    )
    assert preflight(settings) == []


def test_a_store_that_is_no_database_or_too_new(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "state")
    settings.state_dir.mkdir()
    settings.database_path.write_bytes(b"not a database, but long enough to look at" * 100)
    (problem,) = preflight(settings)
    assert problem == f"the store {settings.database_path} cannot be read: file is not a database"

    settings.database_path.unlink()
    with sqlite3.connect(settings.database_path) as conn:
        conn.execute("PRAGMA user_version = 999")
    (problem,) = preflight(settings)
    assert "written by a newer faxgate (schema version 999" in problem


def test_a_full_disk_is_no_reason_not_to_start(
    tmp_path: Path, mounts: Mounts, caplog: pytest.LogCaptureFixture
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "1m")
    settings = fast_settings(disk / "state")
    settings.spool_dir.mkdir(parents=True)
    fill(disk)
    with caplog.at_level(logging.WARNING, logger="faxgate"):
        assert preflight(settings) == []
    assert "folders on a full disk" in caplog.text
    assert str(settings.spool_dir) in caplog.text


def test_listening_and_settings_that_cannot_work_here(tmp_path: Path, listening: int) -> None:
    settings = fast_settings(
        tmp_path / "state",
        # TEST-NET: not this machine's; beyond loopback, the status pages need a password.
        http={"listen": "192.0.2.1:8025", "status_password": "a-long-status-password"},
        smtp={
            "listen": f"0.0.0.0:{listening}",
            "tls_cert": str(tmp_path / "missing.pem"),
            "tls_key": str(tmp_path / "missing.key"),
        },
        inbound={"routes": [{"name": "london", "to": "020 7946 0958", "email": "a@b.example"}]},
    )
    problems = preflight(settings)
    assert len(problems) == 5, problems
    http, smtp, exposed, tls, route = problems
    assert http == (
        "the HTTP server cannot listen on 192.0.2.1:8025: 192.0.2.1 is not an address of "
        "this machine"
    )
    assert smtp.startswith(f"the SMTP listener cannot listen on 0.0.0.0:{listening}: the port")
    assert "anyone could send faxes" in exposed
    assert tls.startswith("cannot load smtp.tls_cert")
    assert "inbound route 'london'" in route


def test_two_listeners_on_one_address(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    address = f"127.0.0.1:{port}"
    settings = fast_settings(tmp_path / "state", http={"listen": address}, smtp={"listen": address})
    assert preflight(settings) == [
        f"the SMTP listener and the HTTP server are both set to listen on {address}"
    ]


def test_a_hot_folder_added_later_is_checked_alone(tmp_path: Path, mounts: Mounts) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    assert hot_folder_problems(FolderSettings(path=outbox)) == []
    mounts.readonly(outbox)
    (problem,) = hot_folder_problems(FolderSettings(path=outbox))
    assert problem.startswith(f"faxgate cannot write in the hot folder {outbox}: the file system")
    assert sorted(os.listdir(outbox)) == ["failed", "processing", "sent"], "no probe left"


def test_the_summary_of_one_problem_is_the_problem() -> None:
    assert summary(["the spool is gone"]) == "the spool is gone"
    assert summary(["a", "b"]) == "faxgate cannot start, for 2 reasons: (1) a; (2) b"


async def test_a_store_that_cannot_be_made_on_a_full_disk_stops_the_start_clearly(
    tmp_path: Path, mounts: Mounts, sandbox: Sandbox
) -> None:
    disk = mounts.tmpfs(tmp_path / "disk", "1m")
    settings = fast_settings(disk / "state", provider={"base_url": sandbox.base_url})
    assert preflight(settings) == []  # the folders are there; the store is not yet
    fill(disk)
    with pytest.raises(StartupError, match=r"cannot open the store .*: database or disk is full"):
        async with started(settings):
            pytest.fail("started on a full disk without a store")
