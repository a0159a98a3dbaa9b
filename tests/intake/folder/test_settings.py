"""Hot folder settings: [[folders]] in the file, FAXGATE_FOLDERS in the environment."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from faxgate.intake.folder.status import Places
from faxgate.settings import ConfigError, load_settings

pytestmark = pytest.mark.usefixtures("clean_environment")


def test_no_folders_by_default() -> None:
    assert load_settings().folders == []


def test_folders_from_the_file(tmp_path: Path) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text(
        """
        [[folders]]
        path = "/srv/fax/outbox"

        [[folders]]
        path = "/mnt/share/fax"
        mode = "poll"
        poll_interval = "5s"
        stable_for = "10s"
        sent_dir = "/srv/fax/archive"
        date_subfolders = true
        cover_from = "Front desk"
        notify = "desk@example.com"
        """
    )
    local, share = load_settings(config).folders
    assert (local.mode, local.stable_for, local.sent_dir) == (
        "inotify",
        timedelta(seconds=3),
        Path("sent"),
    )
    assert (share.mode, share.poll_interval, share.stable_for) == (
        "poll",
        timedelta(seconds=5),
        timedelta(seconds=10),
    )
    places = Places.of(share)
    assert places.sent == Path("/srv/fax/archive")
    assert places.failed == Path("/mnt/share/fax/failed")
    assert places.inside() == {"failed", "processing"}
    assert (share.date_subfolders, share.cover_from, share.notify) == (
        True,
        "Front desk",
        "desk@example.com",
    )


def test_folders_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FAXGATE_FOLDERS", json.dumps([{"path": "/srv/out", "mode": "poll", "max_file_size": 1000}])
    )
    (folder,) = load_settings().folders
    assert (folder.path, folder.mode, folder.max_file_size) == (Path("/srv/out"), "poll", 1000)


@pytest.mark.parametrize(
    ("folders", "says"),
    [
        ([{"path": "/a"}, {"path": "/a/"}], "listed only once"),
        ([{"path": "/a", "sent_dir": "."}], "must not be the folder"),
        ([{"path": "/a", "sent_dir": "x", "failed_dir": "x"}], "must differ"),
        ([{"path": "/a", "mode": "fanotify"}], "folders.0.mode"),
        ([{"path": "/a", "notify": "not an address"}], "not an email address"),
        ([{"path": "/a", "colour": "red"}], "unknown setting"),
        ([{"mode": "poll"}], "folders.0.path"),
    ],
)
def test_bad_folders_are_refused(
    folders: list[dict[str, str]], says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_FOLDERS", json.dumps(folders))
    with pytest.raises(ConfigError, match=says):
        load_settings()
