"""Every intake ends in queue_fax: documents spooled, one job per number, all or nothing."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake, JobState
from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.queue import FaxRequest, IncomingDocument, queue_fax
from faxgate.store import Store
from faxgate.store.spool import Spool
from tests.conftest import pdf_document


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "faxgate.sqlite3")


def test_one_job_per_number_sharing_the_spooled_documents(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    original = tmp_path / "contract.pdf"
    original.write_bytes(pdf_document(2))
    request = FaxRequest(
        numbers=[parse_fax_number("415 555 0100"), parse_fax_number("+44 20 7946 0958")],
        documents=[
            IncomingDocument("contract.pdf", original),
            IncomingDocument("note.txt", b"Please sign."),
        ],
        intake=Intake.CLI,
        cover_to="Legal",
        reply_to="me@example.com",
    )
    jobs = queue_fax(store, spool, request)
    assert [job.to_number for job in jobs] == ["+14155550100", "+442079460958"]
    assert all(job.state is JobState.QUEUED for job in jobs)
    assert jobs[0].group_id is not None
    assert jobs[0].group_id == jobs[1].group_id
    assert original.exists(), "a file given to the CLI is copied, never moved"
    for job in jobs:
        documents = store.documents(job.id)
        assert [d.name for d in documents] == ["contract.pdf", "note.txt"]
        assert documents[0].sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
        assert documents[0].content_type == "application/pdf"
        assert documents[1].path.read_bytes() == b"Please sign."


def test_a_refused_document_queues_nothing_and_leaves_no_file(store: Store, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    request = FaxRequest(
        numbers=[parse_fax_number("415 555 0100")],
        documents=[IncomingDocument("a.pdf", pdf_document(1)), IncomingDocument("b.zip", b"PK")],
        intake=Intake.CLI,
    )
    with pytest.raises(DocumentRefused, match=r"\.zip"):
        queue_fax(store, spool, request)
    assert store.recent_jobs(10) == []
    assert spool.files() == []


def test_a_store_failure_removes_the_spooled_documents(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool(tmp_path / "spool")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "create_jobs", broken)
    request = FaxRequest(
        numbers=[parse_fax_number("415 555 0100")],
        documents=[IncomingDocument("a.pdf", pdf_document(1))],
        intake=Intake.CLI,
    )
    with pytest.raises(OSError, match="disk full"):
        queue_fax(store, spool, request)
    assert spool.files() == []
