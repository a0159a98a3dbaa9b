"""`faxgate run --demo` (`make run`): the whole product on the sandbox, nothing to write."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faxgate.demo import INBOX_ADDRESS, banner, demo_settings
from faxgate.settings import ConfigError, FolderSettings, ListenAddress, Settings
from tests.conftest import pdf_document, wait_for

GUID = "15da1c48b10c96a903eb1bac3d592fbed24ebc35"


def test_the_demo_adds_a_hot_folder_and_inbound_delivery(tmp_path: Path) -> None:
    settings = demo_settings(Settings(state_dir=tmp_path / "var"))
    assert [folder.path for folder in settings.folders] == [tmp_path / "var" / "outbox"]
    assert settings.inbound.default_folder == str(tmp_path / "var" / "inbox")
    assert settings.inbound.default_email == [INBOX_ADDRESS]


def test_the_demo_keeps_what_the_settings_say(tmp_path: Path) -> None:
    own = FolderSettings(path=tmp_path / "scans")
    settings = demo_settings(
        Settings(
            state_dir=tmp_path,
            folders=[own],
            inbound={"default_folder": str(tmp_path / "in")},
            mail={"relay": "127.0.0.1:25"},
        )
    )
    assert settings.folders == [own]
    assert settings.inbound.default_folder == str(tmp_path / "in")
    assert settings.inbound.default_email == []


def test_the_demo_shows_confirmation_reports_unless_told_otherwise(tmp_path: Path) -> None:
    assert demo_settings(Settings(state_dir=tmp_path)).reports.confirmation == "with_image"
    told = Settings(state_dir=tmp_path, reports={"confirmation": "off"})
    assert demo_settings(told).reports.confirmation == "off"


def test_the_demo_never_runs_on_a_real_account() -> None:
    real = Settings(
        provider={"kind": "hellofax", "account_guid": GUID, "username": "a@b.c", "password": "p"}
    )
    with pytest.raises(ConfigError, match="sandbox only"):
        demo_settings(real)


def test_the_banner_without_smtp_or_sandbox_leaves_their_lines_out(tmp_path: Path) -> None:
    text = banner(
        Settings(state_dir=tmp_path, mail={"relay": "mail.example.com:25"}),
        smtp=None,
        http=ListenAddress("127.0.0.1", 8025),
        sandbox_url=None,
    )
    assert "swaks" not in text
    assert "sandbox inbound" not in text
    assert "by the relay mail.example.com:25" in text
    assert "status page:   http://127.0.0.1:8025/" in text


# ---------------------------------------------------------------------------- end to end


class Demo:
    def __init__(self, folder: Path, process: asyncio.subprocess.Process, log: Path) -> None:
        self.folder = folder
        self.process = process
        self.log = log
        self.lines: dict[str, str] = {}

    async def banner(self) -> None:
        def shown() -> bool:
            if self.process.returncode is not None:
                raise AssertionError(f"faxgate exited:\n{self.log.read_text()}")
            return "status page:" in self.log.read_text()

        await wait_for(shown, timeout=30, what="the start-up banner")
        for line in self.log.read_text().splitlines():
            if match := re.match(r"  ([a-z ]+):\s+(.*)$", line):
                self.lines[match[1]] = match[2]

    async def command(self, line: str) -> str:
        """Run a line of the banner as the user would paste it."""
        words = shlex.split(line)
        assert Path(words[0]).name == "faxgate", words
        process = await asyncio.create_subprocess_exec(
            *words,
            cwd=self.folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, output
        return output.decode()


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAXGATE_")}
    env.update(
        {
            "FAXGATE_SANDBOX__LISTEN": "127.0.0.1:0",
            "FAXGATE_SANDBOX__SPEED": "test",
            "FAXGATE_HTTP__LISTEN": "127.0.0.1:0",
            "FAXGATE_SMTP__LISTEN": "127.0.0.1:0",
            "FAXGATE_POLLING__TICK": "0.1",
            "FAXGATE_FOLDERS": "[]",  # none: the demo's own
        }
    )
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "faxgate",
            "run",
            "--demo",
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield Demo(tmp_path, process, log)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def test_make_run_shows_the_hot_folder_and_inbound_faxes(demo: Demo) -> None:
    await demo.banner()
    assert demo.lines["mail a fax"].startswith("swaks --server 127.0.0.1:")
    assert demo.lines["mail out"].startswith("in var/maildir/new/")

    # A file dropped as the banner says goes out and comes back in sent/.
    drop = shlex.split(demo.lines["drop a file"].split("  (")[0])
    assert drop[:2] == ["cp", "some.pdf"]
    assert drop[2] == "var/outbox/14155550123_letter.pdf"
    (demo.folder / drop[2]).write_bytes(pdf_document(1))
    result = demo.folder / "var/outbox/sent/14155550123_letter.pdf.result.json"
    await wait_for(result.exists, timeout=30, what="the dropped file's result in sent/")
    assert json.loads(result.read_text())["outcome"] == "sent"

    # A fax received as the banner says lands in var/inbox and in the Maildir.
    (demo.folder / "some.pdf").write_bytes(pdf_document(2))
    said = await demo.command(demo.lines["receive one"])
    assert "2 pages" in said
    assert demo.lines["inbound faxes"] == "var/inbox/"
    inbox = demo.folder / "var/inbox"
    received = await wait_for(lambda: list(inbox.glob("*.pdf")), timeout=30, what="inbox PDF")
    assert received[0].read_bytes() == pdf_document(2)

    def inbound_mail() -> list[Path]:
        return [
            mail
            for mail in (demo.folder / "var/maildir/new").glob("*")
            if f"To: {INBOX_ADDRESS}" in mail.read_text(errors="replace")
        ]

    await wait_for(inbound_mail, timeout=30, what="the inbound fax's mail in the Maildir")
