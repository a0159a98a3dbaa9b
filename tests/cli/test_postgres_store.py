"""The CLI on a PostgreSQL store: send, status, cancel and inbox open the database that
[store] url names, never the SQLite file in the state directory."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from faxgate.cli import main
from faxgate.clock import utc_now
from faxgate.store import Share, Store
from tests.conftest import pdf_document
from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]


@pytest.fixture(autouse=True)
def on_postgres(clean_environment: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    (clean_environment / "contract.pdf").write_bytes(pdf_document(1))
    monkeypatch.setenv("FAXGATE_STORE__URL", postgres_url)
    return postgres_url


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_send_status_cancel_and_inbox_use_the_database(
    capsys: pytest.CaptureFixture[str], on_postgres: str
) -> None:
    job = run_json(capsys, "send", "(415) 555-0100", "contract.pdf")
    with Store.open_url(on_postgres) as store:
        stored = store.get_job(str(job["id"]))
        assert stored is not None
        assert stored.state.value == "queued"

    status = run_json(capsys, "status")
    assert [recent["id"] for recent in status["recent"]] == [job["id"]]
    assert status["counts"]["queued"] == 1
    assert status["instances"] == []  # no instance has run

    # One instance alive (its heartbeat seen just now) holding a fax, one idle, one gone.
    now = utc_now()
    lease = timedelta(minutes=2)  # [store] lease's default
    with Store.open_url(on_postgres) as store:
        store.instance_seen(
            Share("gw1:41:ab", lease, host="gw1", pid=41), version="1.0", started_at=now, now=now
        )
        store.instance_seen(
            Share("gw2:42:cd", lease, host="gw2", pid=42), version="1.1", started_at=now, now=now
        )
        long_ago = now - timedelta(hours=1)
        store.instance_seen(
            Share("gw3:43:ef", lease, host="gw3", pid=43),
            version="1.0",
            started_at=long_ago,
            now=long_ago,
        )
        store.claim_due_jobs(utc_now(), 1, owner="gw1:41:ab", lease=lease)
    shown = run_json(capsys, "status")["instances"]
    assert [(m["instance"], m["alive"]) for m in shown] == [
        ("gw1:41:ab", True),
        ("gw2:42:cd", True),
        ("gw3:43:ef", False),
    ]
    assert shown[0] == {
        "instance": "gw1:41:ab",
        "alive": True,
        "host": "gw1",
        "pid": 41,
        "version": "1.0",
        "started_at": now.isoformat(),
        "last_seen": now.isoformat(),
        "sending": 0,
        "claimed": 1,
        "notifications": 0,
    }
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "instances: 2 alive, 1 gone" in out
    [line] = [line for line in out.splitlines() if line.startswith("gw1:41:ab")]
    assert line.split()[:5] == ["gw1:41:ab", "alive", "gw1", "41", "1.0"]
    assert line.endswith("0 sending, 1 claimed, 0 notifications")

    assert main(["cancel", str(job["id"])]) == 0
    capsys.readouterr()
    shown = run_json(capsys, "status", str(job["id"]))
    assert shown["state"] == "cancelled"

    assert run_json(capsys, "inbox") == {"faxes": []}
    assert not Path("var/faxgate.sqlite3").exists()


def test_an_unreachable_database_is_one_plain_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAXGATE_STORE__URL", "postgresql://faxgate@127.0.0.1:1/nowhere")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "cannot open the store postgresql://faxgate@127.0.0.1:1/nowhere" in err
    assert "Traceback" not in err
