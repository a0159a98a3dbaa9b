"""Queueing claimed drops: one transaction for the batch, and a drop whose content turns
out not faxable spoiled alone, its files kept for failed/."""

from __future__ import annotations

import os
from pathlib import Path

from faxgate.domain.numbers import parse_fax_number
from faxgate.intake.folder.claim_moves import signature_of
from faxgate.intake.folder.claim_queue import queue_claims
from faxgate.intake.folder.claim_records import DropClaim, Queued, Spoiled
from faxgate.intake.folder.claims import ClaimBox
from faxgate.intake.folder.drops import Drop, Refused
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.status import Places
from faxgate.store import Store
from tests.conftest import pdf_document
from tests.intake.folder.claiming import claim_box, hot_folder


def claimed(box: ClaimBox, places: Places, name: str, content: bytes) -> DropClaim:
    """A drop of one file, planned and moved into the claims folder as `take` does."""
    (places.folder / name).write_bytes(content)
    drop = Drop((name,), None, (parse_fax_number("+14155550100"),), NumberSource.NAME)
    signatures = {name: signature_of(os.lstat(places.folder / name))}
    claim = box.new_claim(places, "", drop, signatures, box.status_names(places))
    os.rename(places.folder / name, box.root / claim.documents[0].target)
    return claim


def test_a_batch_is_queued_and_one_not_faxable_drop_is_spoiled_alone(
    tmp_path: Path, store: Store
) -> None:
    places, box = hot_folder(tmp_path), claim_box(tmp_path, store)
    good = claimed(box, places, "a.pdf", pdf_document(1))
    changed = claimed(box, places, "b.pdf", b"no longer a PDF")
    first, second = queue_claims(store, box.spool, box.root, places, [good, changed])
    assert isinstance(first, Queued)
    assert [job.to_number for job in first.jobs] == ["+14155550100"]
    assert isinstance(second, Spoiled)
    assert second.code == Refused.CONTENT
    assert "b.pdf" in second.reason
    assert second.files == [(box.root / changed.documents[0].target, "b.pdf")]
    assert len(store.recent_jobs(10)) == 1
