"""A hot folder and the spool's claims folder on disk, for the tests of claiming and of
the results that come back to the folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faxgate.intake.folder.claim_records import DropClaim
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


def kill_on(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, call: int = 1) -> None:
    """Make target.name die on its `call`-th call (earlier calls go through)."""
    real = getattr(target, name)
    calls = 0

    def dying(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, dying)


def killed_taking(
    box: ClaimBox, places: Places, claims: list[DropClaim], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim dies where the kill was set; the next process starts without it."""
    with pytest.raises(Killed):
        box.take(places, claims)
    monkeypatch.undo()
