"""Documents every instance can read: on PostgreSQL a job's files and an inbound fax's
document are kept in the database with the rows that name them, and an instance whose
spool lacks one writes it there from the database; on SQLite the paths are as kept."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from faxgate.domain.inbound import NewInboundFax, ReceivedDocument
from faxgate.store import NewDocument, Store
from faxgate.store.spool import Spool
from tests.store import backends
from tests.store.backends import Location, open_store, postgres_only, raw, sqlite_only
from tests.store.making import DATABASE_ERRORS, T0, new_job

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "a" / "spool")


@pytest.fixture
def other_spool(tmp_path: Path) -> Path:
    return tmp_path / "b" / "spool"


@pytest.fixture
def other(location: Location, other_spool: Path) -> Iterator[Store]:
    """Another instance on the same store, with a spool of its own."""
    with open_store(location) as opened:
        opened.cache_documents_in(other_spool)
        yield opened


def kept_digests(location: Location) -> list[str]:
    with raw(location) as conn:
        rows = conn.execute("SELECT sha256 FROM document_bytes ORDER BY sha256").fetchall()
    return [row[0] for row in rows]


def job_with(spool: Spool, *contents: bytes) -> list[NewDocument]:
    return [
        NewDocument(f"page{n}.pdf", spool.store_bytes(data, suffix=".pdf"), "application/pdf")
        for n, data in enumerate(contents)
    ]


def received(spool: Spool, data: bytes, guid: str = "f" * 40) -> NewInboundFax:
    file = spool.store_bytes(data, suffix=".pdf")
    return NewInboundFax(
        provider_guid=guid,
        to_number="+14155550100",
        from_number="+14155550199",
        pages=1,
        arrived_at=T0,
        route="default",
        document=ReceivedDocument(file.path, file.size, file.sha256, "application/pdf"),
    )


@postgres_only
def test_a_job_taken_by_one_instance_is_read_by_another_from_the_database(
    location: Location, store: Store, spool: Spool, other: Store, other_spool: Path
) -> None:
    docs = job_with(spool, PDF, b"%PDF-1.4\nsecond")
    [job] = store.create_jobs([new_job(documents=docs)])
    assert kept_digests(location) == sorted(d.file.sha256 for d in docs)
    # The instance that took it in reads its own files.
    assert [d.path for d in store.documents(job.id)] == [d.file.path for d in docs]

    # Another host has none of them: each is written into its spool from the database.
    for doc in docs:
        doc.file.path.unlink()
    read = other.documents(job.id)
    assert [d.path.parent for d in read] == [other_spool.resolve()] * 2
    assert [d.path.read_bytes() for d in read] == [PDF, b"%PDF-1.4\nsecond"]
    assert [d.path.suffix for d in read] == [".pdf", ".pdf"]
    assert [d.name for d in read] == ["page0.pdf", "page1.pdf"]
    # Written once: read again, the same file, and no temporary file is left.
    assert other.documents(job.id) == read
    assert sorted(p.name for p in other_spool.iterdir()) == sorted(d.path.name for d in read)


@postgres_only
def test_an_inbound_fax_received_by_one_instance_is_read_by_another(
    store: Store, spool: Spool, other: Store, other_spool: Path
) -> None:
    fax, _ = store.record_inbound(received(spool, PDF))
    assert fax.document is not None
    fax.document.path.unlink()
    seen = other.get_inbound(fax.id)
    assert seen is not None
    assert seen.document is not None
    assert seen.document.path.parent == other_spool.resolve()
    assert seen.document.path.read_bytes() == PDF
    assert seen.document.sha256 == fax.document.sha256


@postgres_only
def test_one_document_in_many_jobs_is_kept_once(
    location: Location, store: Store, spool: Spool
) -> None:
    store.create_jobs([new_job(documents=job_with(spool, PDF)) for _ in range(3)])
    store.record_inbound(received(spool, PDF))
    assert kept_digests(location) == [hashlib.sha256(PDF).hexdigest()]


@postgres_only
def test_a_job_not_created_keeps_no_bytes(location: Location, store: Store, spool: Spool) -> None:
    with raw(location) as conn:
        backends.add_failing_trigger(conn, "events", "no events today")
    with pytest.raises(DATABASE_ERRORS):
        store.create_jobs([new_job(documents=job_with(spool, PDF))])
    assert kept_digests(location) == []
    assert store.count_by_state() == dict.fromkeys(store.count_by_state(), 0)


@postgres_only
def test_a_file_changed_since_it_was_spooled_is_refused(
    location: Location, store: Store, spool: Spool
) -> None:
    docs = job_with(spool, PDF)
    docs[0].file.path.write_bytes(b"something else")
    with pytest.raises(OSError, match="changed since it was spooled"):
        store.create_jobs([new_job(documents=docs)])
    assert kept_digests(location) == []


@postgres_only
def test_a_document_neither_here_nor_in_the_database_keeps_its_path(
    location: Location, store: Store, spool: Spool, other: Store
) -> None:
    [job] = store.create_jobs([new_job(documents=job_with(spool, PDF))])
    [doc] = store.documents(job.id)
    doc.path.unlink()
    with raw(location) as conn:
        conn.execute("DELETE FROM document_bytes")
    # The reader says it is missing, as before documents were kept in the database.
    assert [d.path for d in other.documents(job.id)] == [doc.path]


@sqlite_only
def test_on_sqlite_documents_stay_in_the_spool(
    location: Location, store: Store, spool: Spool
) -> None:
    docs = job_with(spool, PDF)
    [job] = store.create_jobs([new_job(documents=docs)])
    store.record_inbound(received(spool, PDF))
    assert kept_digests(location) == []
    assert [d.path for d in store.documents(job.id)] == [docs[0].file.path]
