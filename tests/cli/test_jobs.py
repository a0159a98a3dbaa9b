"""send, status, retry and cancel work on the store, with or without the daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faxgate.cli import main
from faxgate.cli.common import CommandError
from faxgate.cli.jobs import _move_by_hand
from faxgate.domain.jobs import JobState
from faxgate.store import Store
from tests.conftest import pdf_document


@pytest.fixture(autouse=True)
def workdir(clean_environment: Path) -> Path:
    (clean_environment / "contract.pdf").write_bytes(pdf_document(2))
    return clean_environment


def send(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["send", *args, "--json"]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_send_queues_a_job_in_the_store(capsys: pytest.CaptureFixture[str]) -> None:
    job = send(capsys, "(415) 555-0100", "contract.pdf", "--cover-to", "Legal", "--message", "Hi")
    assert job["state"] == "queued"
    assert job["to"] == "+14155550100"
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        stored = store.get_job(str(job["id"]))
        assert stored is not None
        assert stored.cover_to == "Legal"
        assert stored.cover_message == "Hi"
        assert [d.name for d in store.documents(stored.id)] == ["contract.pdf"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+1 900 555 0100", "contract.pdf"], "premium"),
        (["hello", "contract.pdf"], "'hello'"),
        (["4155550100", "missing.pdf"], "missing.pdf: no such file"),
        (["4155550100", "contract.pdf", "--from", "abc"], "'abc'"),
    ],
)
def test_send_refuses_bad_input_plainly(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", *args]) == 1
    assert message in capsys.readouterr().err
    assert not Path("var/faxgate.sqlite3").exists() or not Store.open(
        Path("var/faxgate.sqlite3")
    ).recent_jobs(5)


def test_send_refuses_a_document_that_cannot_be_faxed(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "photos.zip").write_bytes(b"PK\x03\x04")
    assert main(["send", "4155550100", "photos.zip"]) == 1
    assert ".zip files cannot be faxed" in capsys.readouterr().err


def test_status_lists_the_queue_and_shows_one_job(capsys: pytest.CaptureFixture[str]) -> None:
    job = send(capsys, "4155550100", "contract.pdf")
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "queue: 1 queued" in out
    assert str(job["id"]) in out

    assert main(["status", str(job["id"]).upper()]) == 0  # ids are forgiving about case
    out = capsys.readouterr().out
    assert "contract.pdf" in out
    assert "history:" in out

    assert main(["status", str(job["id"]), "--json"]) == 0
    detail = json.loads(capsys.readouterr().out)
    assert detail["events"][0]["to"] == "queued"
    assert detail["documents"][0]["name"] == "contract.pdf"

    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["queued"] == 1


def test_status_of_an_unknown_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "0000000000zz"]) == 1
    assert "no job" in capsys.readouterr().err
    assert main(["status", "not-an-id"]) == 1
    assert "not a job id" in capsys.readouterr().err


def test_cancel_a_queued_job_then_it_cannot_be_cancelled_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = send(capsys, "4155550100", "contract.pdf")
    assert main(["cancel", str(job["id"])]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main(["cancel", str(job["id"])]) == 1
    assert "already done" in capsys.readouterr().err
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        [report] = store.notifications(str(job["id"]))  # its owner hears of it, once
    assert report.payload["state"] == "cancelled"


def test_retry_only_failed_or_uncertain_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    job = send(capsys, "4155550100", "contract.pdf")
    job_id = str(job["id"])
    assert main(["retry", job_id]) == 1
    assert "only failed, uncertain or presumed sent" in capsys.readouterr().err

    with Store.open(Path("var/faxgate.sqlite3")) as store:
        store.transition(job_id, JobState.SUBMITTING, detail="test")
        store.transition(job_id, JobState.UNCERTAIN, detail="test", reason="could not tell")
    assert main(["retry", job_id]) == 0
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        again = store.get_job(job_id)
        assert again is not None
        assert again.state is JobState.QUEUED
        assert again.attempt == 2
        assert again.reason is None


def test_a_job_presumed_sent_is_done_yet_may_be_sent_again_by_a_person(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = send(capsys, "4155550100", "contract.pdf")
    job_id = str(job["id"])
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        store.transition(job_id, JobState.SUBMITTING, detail="test")
        store.transition(job_id, JobState.SUBMITTED, detail="test", provider_guid="a" * 40)
        store.transition(job_id, JobState.PRESUMED_SENT, detail="gone", reason="removed")
    assert main(["status", job_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "presumed_sent"
    assert main(["cancel", job_id]) == 1
    assert "cannot cancel, it is already done" in capsys.readouterr().err
    assert main(["retry", job_id]) == 0  # the recipient says it did not arrive
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        again = store.get_job(job_id)
        assert again is not None
        assert (again.state, again.attempt, again.provider_guid) == (JobState.QUEUED, 2, None)


def test_a_job_that_moved_since_it_was_read_is_left_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = str(send(capsys, "4155550100", "contract.pdf")["id"])
    with Store.open(Path("var/faxgate.sqlite3")) as store:
        seen = store.get_job(job_id)
        assert seen is not None
        store.transition(job_id, JobState.SUBMITTING, detail="the dispatcher took it")
        with pytest.raises(CommandError, match="changed meanwhile \\(now submitting\\); not"):
            _move_by_hand(store, seen, JobState.CANCELLED, detail="cancelled by a person")
        now = store.get_job(job_id)
    assert now is not None
    assert now.state is JobState.SUBMITTING


def test_send_with_a_priority_and_status_says_why_a_job_waits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = send(capsys, "4155550100", "contract.pdf")
    urgent = send(capsys, "4155550100", "contract.pdf", "--priority", "urgent")
    later = send(capsys, "4155550100", "contract.pdf", "--priority", "bulk")
    assert (first["priority"], urgent["priority"], later["priority"]) == (
        "normal",
        "urgent",
        "bulk",
    )

    def shown(job: dict[str, object]) -> dict[str, object]:
        assert main(["status", str(job["id"]), "--json"]) == 0
        result: dict[str, object] = json.loads(capsys.readouterr().out)
        return result

    # One call at a time to a number: the urgent one is first in line.
    assert shown(urgent)["waiting"] is None
    assert shown(first)["waiting"] == "behind 1 fax to this number"
    assert shown(later)["waiting"] == "behind 2 faxes to this number"
    assert main(["status", str(later["id"])]) == 0
    assert "behind 2 faxes to this number" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["send", "4155550100", "contract.pdf", "--priority", "soon"])
