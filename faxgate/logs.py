"""faxgate's log: one line per event on stderr, a few words then `key=value` pairs.

Under systemd, stderr is the journal (JOURNAL_STREAM names it): each line then starts with
its syslog priority (`<3>` to `<7>`), which journald turns into the entry's level, and
carries no timestamp, since journald stamps every entry itself. Anywhere else a line starts
with the time (UTC) and the level.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Final, TextIO

__all__ = ["configure", "journal_formatter", "plain_formatter", "writes_to_journal"]

# Libraries that log every request or tick at INFO; faxgate logs what they mean.
NOISY: Final = ("apscheduler", "httpx", "aiohttp.access")

_PRIORITY: Final = {  # syslog's numbers, as sd-daemon(3) prefixes them
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class _JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno > logging.DEBUG else 7)
        return f"<{priority}>{super().format(record)}"


def journal_formatter() -> logging.Formatter:
    return _JournalFormatter("%(name)s: %(message)s")


def plain_formatter() -> logging.Formatter:
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    return formatter


def writes_to_journal(stream: TextIO = sys.stderr) -> bool:
    """Whether `stream` is the journal systemd connected us to (JOURNAL_STREAM=dev:inode)."""
    named = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = named.partition(":")
    try:
        stat = os.fstat(stream.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError):  # unset, garbled, or a stream with no file behind it
        return False


def configure(level: str, *, verbose: bool = False, stream: TextIO = sys.stderr) -> None:
    """The daemon's log: `level` ("info", ...) for faxgate, WARNING at least for the noisy
    libraries; --verbose keeps debugging detail whatever the level."""
    root = logging.getLogger()
    formatter = journal_formatter() if writes_to_journal(stream) else plain_formatter()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream))
    for handler in root.handlers:
        handler.setFormatter(formatter)
    set_level(level, verbose=verbose)


def set_level(level: str, *, verbose: bool = False) -> None:
    """Change the level while running (a reload)."""
    number = logging.DEBUG if verbose else logging.getLevelNamesMapping()[level.upper()]
    logging.getLogger().setLevel(number)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(number, logging.WARNING))
