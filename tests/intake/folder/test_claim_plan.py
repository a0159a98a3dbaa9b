"""A claim planned from a drop, and the fax request a claim makes. No files needed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from faxgate.domain.jobs import Intake
from faxgate.domain.numbers import FaxNumber, parse_fax_number
from faxgate.intake.folder.claim_plan import fax_request, plan_claim
from faxgate.intake.folder.drops import Drop
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.ready import Signature
from faxgate.intake.folder.status import Places
from faxgate.store.spool import SpooledFile

NOW = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
PLACES = Places(
    folder=Path("/srv/fax"),
    sent=Path("/srv/fax/sent"),
    failed=Path("/srv/fax/failed"),
    processing=Path("/srv/fax/processing"),
)
DROP = Drop(
    documents=("Contract.PDF", "annex.weird-suffix"),
    sidecar="Contract.PDF.json",
    numbers=(parse_fax_number("+14155550100"), parse_fax_number("+14155550111")),
    source=NumberSource.SIDECAR,
    cover_to="Legal",
    notify="desk@example.com",
)
SIGNATURES = {
    "Contract.PDF": Signature(10, 1, 101),
    "annex.weird-suffix": Signature(20, 2, 102),
    "Contract.PDF.json": Signature(30, 3, 103),
}


def test_a_claim_names_each_file_in_the_spool_and_keeps_where_it_was_dropped() -> None:
    statuses: set[str] = set()
    claim = plan_claim(PLACES, "sub", DROP, SIGNATURES, statuses, drop_id="D1", now=NOW)
    assert [(f.source, f.target, f.inode) for f in claim.documents] == [
        ("sub/Contract.PDF", "D1-0.pdf", 101),
        ("sub/annex.weird-suffix", "D1-1", 102),
    ]
    assert claim.sidecar is not None
    assert (claim.sidecar.source, claim.sidecar.target) == ("sub/Contract.PDF.json", "D1.sidecar")
    assert [f.target for f in claim.files] == ["D1-0.pdf", "D1-1", "D1.sidecar"]
    assert claim.numbers == ["+14155550100", "+14155550111"]
    assert (claim.number_from, claim.cover_to, claim.taken_at) == ("sidecar", "Legal", NOW)
    assert claim.status == PLACES.processing / "Contract.PDF.status.json"
    assert statuses == {"Contract.PDF.status.json"}


def test_a_status_name_taken_gets_the_next_free_one() -> None:
    statuses = {"Contract.PDF.status.json"}
    claim = plan_claim(PLACES, "", DROP, SIGNATURES, statuses, drop_id="D2", now=NOW)
    assert claim.status.name == "Contract (2).PDF.status.json"
    assert claim.documents[0].source == "Contract.PDF"
    assert "Contract (2).PDF.status.json" in statuses


def test_the_request_carries_the_spooled_documents_under_their_dropped_names() -> None:
    claim = plan_claim(PLACES, "", DROP, SIGNATURES, set(), drop_id="D3", now=NOW)
    spooled = [
        SpooledFile(Path("/spool/folder/D3-0.pdf"), 10, "a"),
        SpooledFile(Path("/x"), 20, "b"),
    ]
    request = fax_request(claim, claim.ref(PLACES), spooled)
    assert [(d.name, d.source) for d in request.documents] == [
        ("Contract.PDF", spooled[0]),
        ("annex.weird-suffix", spooled[1]),
    ]
    assert request.numbers == [FaxNumber(e164, None) for e164 in claim.numbers]
    assert request.intake is Intake.FOLDER
    assert request.intake_ref["drop"] == "D3"
    assert request.intake_ref["folder"] == "/srv/fax"
    assert (request.cover_to, request.reply_to) == ("Legal", "desk@example.com")
