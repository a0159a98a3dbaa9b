"""`faxgate inbox`: the faxes received and where each went, from the store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from faxgate.cli import main
from faxgate.domain.inbound import InboundFax, NewDelivery, NewInboundFax, ReceivedDocument
from faxgate.store import Store

T0 = datetime(2024, 5, 1, 10, 15, 30, tzinfo=UTC)
DB = Path("var/faxgate.sqlite3")


pytestmark = pytest.mark.usefixtures("clean_environment")


def receive(store: Store, guid: str, *, document: bool, route: str = "sales") -> InboundFax:
    received = ReceivedDocument(Path("/spool/x.pdf"), 10, "ab" * 32, "application/pdf")
    fax, created = store.record_inbound(
        NewInboundFax(
            provider_guid=guid,
            to_number="+14155550100",
            from_number="+12125550199",
            pages=3,
            arrived_at=T0,
            route=route,
            document=received if document else None,
            note=None if document else "the provider's callback included no document",
        ),
        [
            NewDelivery("email", "sales@example.com", {"kind": "email"}),
            NewDelivery("folder", "/srv/fax/in", {"kind": "folder"}),
        ],
    )
    assert created
    return fax


def test_inbox_lists_faxes_and_their_deliveries(capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(DB) as store:
        first = receive(store, "1" * 40, document=True)
        second = receive(store, "2" * 40, document=False)
        store.mark_inbound_delivered(first.id, 0, detail="<m@example.com>")
        (_, folder_row) = store.pending_notifications(datetime.now(UTC), 10)[:2]
        store.mark_delivery_failed(folder_row.id, "Permission denied", None)

    assert main(["inbox"]) == 0
    out = capsys.readouterr().out
    assert first.id in out
    assert second.id in out
    assert "email delivered, folder given up" in out
    assert "email pending, folder pending, no document" in out

    assert main(["inbox", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["faxes"]
    assert [fax["id"] for fax in listed] == [second.id, first.id]  # newest first
    assert listed[1]["from"] == "+12125550199"
    assert listed[1]["document"]["path"] == "/spool/x.pdf"
    assert listed[1]["deliveries"] == [
        {
            "kind": "email",
            "to": "sales@example.com",
            "state": "delivered",
            "delivered_at": listed[1]["deliveries"][0]["delivered_at"],
            "detail": "<m@example.com>",
            "attempts": 0,
            "last_error": None,
        },
        {
            "kind": "folder",
            "to": "/srv/fax/in",
            "state": "given up",
            "delivered_at": None,
            "detail": None,
            "attempts": 1,
            "last_error": "Permission denied",
        },
    ]
    assert listed[0]["document"] is None


def test_inbox_shows_one_fax_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open(DB) as store:
        fax = receive(store, "3" * 40, document=False)
    assert main(["inbox", fax.id.upper()]) == 0
    out = capsys.readouterr().out
    for fact in ("+1 212-555-0199", "+1 415-555-0100", "3" * 40, "not included", "/srv/fax/in"):
        assert fact in out
    assert main(["inbox", fax.id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == fax.id


def test_inbox_of_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inbox"]) == 0
    assert "no fax received yet" in capsys.readouterr().out
    assert main(["inbox", "0000000000zz"]) == 1
    assert "no inbound fax" in capsys.readouterr().err
    assert main(["inbox", "what?"]) == 1
    assert "not a fax id" in capsys.readouterr().err
