"""The log's two shapes: priority-prefixed lines for the journal, timestamped ones elsewhere."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgate import logs


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    formatters = [handler.formatter for handler in handlers]
    yield
    root.handlers[:] = handlers
    for handler, formatter in zip(handlers, formatters, strict=True):
        handler.setFormatter(formatter)
    root.setLevel(level)


def record(level: int, message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("faxgate.dispatcher", level, __file__, 1, message, args, None)


def test_journal_lines_carry_the_priority_and_no_time() -> None:
    formatter = logs.journal_formatter()
    line = formatter.format(record(logging.INFO, "submitted job=%s guid=%s", "j1", "g1"))
    assert line == "<6>faxgate.dispatcher: submitted job=j1 guid=g1"
    assert formatter.format(record(logging.ERROR, "x")).startswith("<3>")
    assert formatter.format(record(logging.WARNING, "x")).startswith("<4>")
    assert formatter.format(record(logging.DEBUG, "x")).startswith("<7>")


def test_plain_lines_start_with_the_utc_time_and_level() -> None:
    line = logs.plain_formatter().format(record(logging.WARNING, "not sent job=%s", "j1"))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING faxgate.dispatcher: not sent job=j1",
        line,
    )


def test_the_journal_is_recognised_by_device_and_inode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "journal"
    with target.open("w") as stream:
        stat = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert logs.writes_to_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino + 1}")
        assert not logs.writes_to_journal(stream)  # inherited by a child whose stderr moved
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert not logs.writes_to_journal(stream)
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not logs.writes_to_journal(io.StringIO())


def test_configure_sets_levels_and_quietens_chatty_libraries() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    root.handlers[:] = []
    logs.configure("warning", stream=stream)
    logging.getLogger("faxgate.test").info("hidden")
    logging.getLogger("faxgate.test").warning("shown key=%s", "v")
    assert stream.getvalue().endswith("WARNING faxgate.test: shown key=v\n")
    logs.set_level("debug")
    assert root.level == logging.DEBUG
    assert logging.getLogger("httpx").level == logging.WARNING


def test_a_daemon_under_systemd_writes_journal_lines(tmp_path: Path) -> None:
    """A child whose stderr is "the journal" (a file named in JOURNAL_STREAM)."""
    journal = tmp_path / "journal"
    code = (
        "import logging, sys\n"
        "from faxgate import logs\n"
        "logs.configure('info')\n"
        "logging.getLogger('faxgate').info('faxgate ready state_dir=%s', '/x')\n"
    )
    with journal.open("w") as stderr:
        stat = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        subprocess.run([sys.executable, "-c", code], stderr=stderr, env=env, check=True)
    assert journal.read_text() == "<6>faxgate: faxgate ready state_dir=/x\n"
