"""A hot folder and the spool's claims folder on disk, for the tests of claiming and of
the results that come back to the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.status import Places
from faxgate.settings import FolderSettings
from faxgate.store import Store


def hot_folder(tmp_path: Path) -> Places:
    """tmp_path/outbox with its processing/ folder."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    found = Places.of(FolderSettings(path=outbox))
    found.processing.mkdir()
    return found


def claim_box(tmp_path: Path, store: Store) -> ClaimBox:
    return ClaimBox(tmp_path / "state" / "spool", store)


class Killed(BaseException):
    """The process died here."""


@pytest.fixture
def places(tmp_path: Path) -> Places:
    return hot_folder(tmp_path)


@pytest.fixture
def box(tmp_path: Path, store: Store) -> ClaimBox:
    return claim_box(tmp_path, store)
