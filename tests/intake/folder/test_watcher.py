"""Which paths the inotify events may speak of, and the overflow alarm."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from faxgate.intake.folder.watcher import overflow_alarm, relative

FOLDER = Path("/srv/outbox")
OURS = frozenset({"sent", "failed", "processing"})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/outbox/a.pdf", "a.pdf"),
        ("/srv/outbox/+14155550100/a.pdf", "+14155550100/a.pdf"),
        ("/srv/outbox/+14155550100", "+14155550100"),
        ("/srv/outbox/sent/a.pdf", None),
        ("/srv/outbox/processing", None),
        ("/srv/outbox/a/b/c.pdf", None),
        ("/srv/outbox/.a.pdf", None),
        ("/srv/outbox/.sub/a.pdf", None),
        ("/srv/outbox/a.pdf.part", None),
        ("/srv/other/a.pdf", None),
        ("/srv/outbox", None),
        ("", None),
    ],
)
def test_paths_the_events_may_speak_of(path: str, expected: str | None) -> None:
    assert relative(FOLDER, OURS, path) == expected


class Watcher:
    def __init__(self) -> None:
        self.overflows = 0

    def overflowed(self) -> None:
        self.overflows += 1


def test_the_overflow_line_rings_the_alarm_while_it_lasts() -> None:
    watcher = Watcher()
    logger = logging.getLogger("watchdog.observers.inotify_c")
    with overflow_alarm([watcher]):
        logger.warning("Inotify queue overflowed; filesystem events were lost")
        logger.warning("something else")
    logger.warning("Inotify queue overflowed; filesystem events were lost")
    assert watcher.overflows == 1
