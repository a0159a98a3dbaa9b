"""`faxgate purge`: one pass of document retention from the command line, and a retry of a
job whose documents were removed refused with words."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from faxgate.cli import main
from faxgate.domain.inbound import NewDelivery
from faxgate.domain.jobs import JobState
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document
from tests.store.test_retention import received

S = JobState
DB = Path("var/faxgate.sqlite3")


@pytest.fixture(autouse=True)
def workdir(clean_environment: Path) -> Path:
    (clean_environment / "contract.pdf").write_bytes(pdf_document(2))
    return clean_environment


def failed_long_ago(capsys: pytest.CaptureFixture[str], days: float = 100) -> str:
    """A job sent from the command line that failed `days` ago."""
    assert main(["send", "4155550100", "contract.pdf", "--json"]) == 0
    job_id = str(json.loads(capsys.readouterr().out)["id"])
    then = datetime.now(UTC) - timedelta(days=days)
    with Store.open(DB) as store:
        store.transition(job_id, S.SUBMITTING, detail="test", now=then)
        store.transition(job_id, S.FAILED, detail="refused", now=then)
    return job_id


def spool_files() -> list[Path]:
    return sorted(p for p in Path("var/spool").iterdir() if not p.name.startswith("."))


def test_a_dry_run_changes_nothing_and_prints_the_counts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = failed_long_ago(capsys)
    failed_long_ago(capsys, days=10)  # recent: kept
    before = spool_files()
    assert main(["purge", "--dry-run"]) == 0
    size = len(pdf_document(2))
    assert capsys.readouterr().out == (
        f"would remove 1 documents ({size} bytes) of 1 jobs and 0 inbound faxes\n"
    )
    assert spool_files() == before
    with Store.open(DB) as store:
        assert store.documents(job_id)[0].removed_at is None

    assert main(["purge", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (counts["dry_run"], counts["jobs"], counts["documents"], counts["files"]) == (
        False,
        1,
        1,
        1,
    )
    assert len(spool_files()) == len(before) - 1
    assert main(["purge"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 documents (0 bytes) of 0 jobs")


def test_off_keeps_everything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failed_long_ago(capsys)
    monkeypatch.setenv("FAXGATE_RETENTION__DOCUMENTS", "off")
    before = spool_files()
    assert main(["purge"]) == 0
    assert "kept forever" in capsys.readouterr().out
    assert spool_files() == before


def test_a_job_whose_documents_were_removed_is_not_sent_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = failed_long_ago(capsys)
    assert main(["purge"]) == 0
    capsys.readouterr()
    with Store.open(DB) as store:
        removed_at = store.documents(job_id)[0].removed_at
    assert removed_at is not None
    assert main(["retry", job_id]) == 1
    today = removed_at.strftime("%Y-%m-%d")
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"job {job_id} cannot be sent again: its documents were removed on {today}"
            " after 90 days ([retention] documents)"
        )
    )
    with Store.open(DB) as store:
        job = store.get_job(job_id)
        assert job is not None
        assert job.state is S.FAILED
    assert main(["status", job_id]) == 0
    assert f"removed on {today}" in capsys.readouterr().out


def test_an_inbound_fax_removed_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    then = datetime.now(UTC) - timedelta(days=100)
    file = Spool(Path("var/spool")).store_bytes(pdf_document(1), suffix=".pdf")
    with Store.open(DB) as store:
        fax, _ = store.record_inbound(
            received(file, "b" * 40),
            [NewDelivery("email", "a@example.org")],
            now=then,
        )
        store.mark_inbound_delivered(fax.id, 0, detail="sent", now=then)
    assert main(["purge", "--dry-run"]) == 0
    assert "of 0 jobs and 1 inbound faxes" in capsys.readouterr().out
    assert main(["purge"]) == 0
    capsys.readouterr()
    assert not file.path.exists()
    assert main(["inbox", fax.id]) == 0
    assert "removed on" in capsys.readouterr().out
    assert main(["inbox", fax.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["document"]["removed_at"]
