"""`faxgate inbox`: the faxes received, and where each was delivered.

It reads the store directly, so it works whether or not the daemon runs.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from faxgate.cli import common
from faxgate.domain.inbound import InboundDelivery, InboundFax
from faxgate.domain.jobs import normalize_job_id
from faxgate.store import Store


def register(subparsers: common.Subparsers) -> None:
    inbox = subparsers.add_parser("inbox", help="faxes received, and where each was delivered")
    inbox.add_argument("fax", metavar="ID", nargs="?", help="show this fax in full")
    inbox.add_argument("--limit", type=int, default=20, help="how many recent faxes to list")
    common.add_json_flag(inbox)
    inbox.set_defaults(func=inbox_command)


def inbox_command(args: argparse.Namespace) -> int:
    settings = common.settings_from(args)
    with common.open_store(settings) as store:
        if args.fax:
            fax = _find(store, args.fax)
            faxes = [(fax, store.inbound_deliveries(fax.id))]
        else:
            faxes = [
                (fax, store.inbound_deliveries(fax.id)) for fax in store.recent_inbound(args.limit)
            ]
    if args.json:
        summaries = [fax_summary(fax, deliveries) for fax, deliveries in faxes]
        common.print_json(summaries[0] if args.fax else {"faxes": summaries})
        return common.EXIT_OK
    if args.fax:
        _show(*faxes[0])
        return common.EXIT_OK
    if not faxes:
        print("no fax received yet")
        return common.EXIT_OK
    common.print_table(
        ["id", "received (UTC)", "from", "to", "pages", "route", "delivered"],
        [
            [
                fax.id,
                _time(fax.when),
                fax.from_number or "unknown",
                fax.to_number,
                fax.pages,
                fax.route,
                _deliveries_line(fax, deliveries),
            ]
            for fax, deliveries in faxes
        ],
    )
    return common.EXIT_OK


def _find(store: Store, text: str) -> InboundFax:
    try:
        fax_id = normalize_job_id(text)
    except ValueError:
        raise common.CommandError(f"{text!r} is not a fax id (see `faxgate inbox`)") from None
    fax = store.get_inbound(fax_id)
    if fax is None:
        raise common.CommandError(f"no inbound fax {text!r} (see `faxgate inbox`)")
    return fax


def _deliveries_line(fax: InboundFax, deliveries: list[InboundDelivery]) -> str:
    parts = [f"{d.kind} {d.state}" for d in deliveries] or ["nowhere: no route"]
    if fax.document is None:
        parts.append("no document")
    return ", ".join(parts)


def _show(fax: InboundFax, deliveries: list[InboundDelivery]) -> None:
    # Here, not above: writing numbers as people read them loads phonenumbers, which the
    # list does not need.
    from faxgate.inbound.compose import shown

    rows: list[tuple[str, object]] = [
        ("fax", fax.id),
        ("from", shown(fax.from_number)),
        ("to line", shown(fax.to_number)),
        ("pages", fax.pages or "not known"),
        ("received", _time(fax.when)),
        ("stored", _time(fax.received_at)),
        ("route", fax.route),
        ("provider GUID", fax.provider_guid),
        ("document", _document_line(fax)),
        ("note", fax.note),
    ]
    for label, value in rows:
        if value:
            print(f"{label + ':':<15}{value}")
    print()
    if not deliveries:
        print("no route delivers it: see [inbound] in the settings")
        return
    common.print_table(
        ["delivery", "to", "state", "tries", "done", "detail"],
        [
            [
                d.kind,
                d.target,
                d.state,
                d.attempts,
                _time(d.delivered_at) if d.delivered_at else None,
                d.detail or d.last_error,
            ]
            for d in deliveries
        ],
    )


def _document_line(fax: InboundFax) -> object:
    if fax.document is None:
        return "not included"
    if fax.removed_at is not None:
        return f"removed on {fax.removed_at:%Y-%m-%d} ([retention] documents)"
    return fax.document.path


def fax_summary(fax: InboundFax, deliveries: list[InboundDelivery]) -> dict[str, Any]:
    document = fax.document
    return {
        "id": fax.id,
        "received_at": _iso(fax.when),
        "stored_at": _iso(fax.received_at),
        "provider_guid": fax.provider_guid,
        "from": fax.from_number,
        "to": fax.to_number,
        "pages": fax.pages,
        "route": fax.route,
        "document": None
        if document is None
        else {
            "path": str(document.path),
            "size": document.size,
            "sha256": document.sha256,
            "content_type": document.content_type,
            "removed_at": _iso(fax.removed_at) if fax.removed_at else None,
        },
        "note": fax.note,
        "deliveries": [
            {
                "kind": d.kind,
                "to": d.target,
                "state": d.state,
                "delivered_at": _iso(d.delivered_at) if d.delivered_at else None,
                "detail": d.detail,
                "attempts": d.attempts,
                "last_error": d.last_error,
            }
            for d in deliveries
        ],
    }


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
