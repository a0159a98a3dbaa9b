"""Taking an inbound fax from the provider's callback: durable before the 200.

The web server hands over the transmission object and the file parts it saved. Before
this returns (and so before the provider hears 200), the document is in the spool (fsync,
rename, fsync of the folder) and the fax's record is committed together with the
deliveries its route owes and their outbox rows. A crash before that point loses nothing:
the provider never heard 200 and sends the fax again. A crash after it loses nothing
either: the notifier finds the outbox rows on the next start.

The same fax arriving twice (the provider retries, possibly several copies at once) is
recognised by its GUID and stored once; both callbacks are answered 200.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pypdf import PdfReader

from faxgate import metrics
from faxgate.domain.inbound import NewDelivery, NewInboundFax, ReceivedDocument
from faxgate.domain.inbound_routes import DeliveryTarget, RoutingTable
from faxgate.hellofax.models import Transmission
from faxgate.inbound.compose import e164_or_none, number_from_provider
from faxgate.inbound.documents import (
    HEAD_BYTES,
    PDF,
    DocumentKind,
    FilePart,
    choose_document,
    document_kind,
)
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.store.spool import Spool

log = logging.getLogger("faxgate.inbound")

UPLOAD_DIR_NAME = "inbound-uploads"
_UPLOAD_PREFIX = "faxgate-inbound-"  # web.py's temporary directories


def routing_from_settings(settings: Settings) -> RoutingTable:
    """The routing table; ValueError names a rule whose number cannot be read."""
    inbound = settings.inbound
    return RoutingTable.build(
        inbound.routes,
        default_email=inbound.default_email,
        default_folder=inbound.default_folder,
        policy=settings.numbers.policy(),
    )


def prepare_upload_dir(state_dir: Path) -> Path:
    """Where the web server saves a callback's files while it is handled: beside the spool,
    so a document moves in by rename. Emptied of what a crash left."""
    path = state_dir / UPLOAD_DIR_NAME
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob(f"{_UPLOAD_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return path


def delivery_for(target: DeliveryTarget) -> NewDelivery:
    """The record of a delivery owed, and what its outbox row tells the delivery handler."""
    payload: dict[str, Any] = {"kind": target.kind}
    if target.kind == "email":
        payload["recipients"] = list(target.recipients)
    else:
        payload["folder"] = target.folder
    return NewDelivery(kind=target.kind, target=target.target, payload=payload)


class InboundReceiver:
    """The inbound callback's handler (faxgate.web.server.InboundHandler)."""

    def __init__(
        self,
        store: Store,
        spool: Spool,
        routing: RoutingTable,
        *,
        upload_dir: Path | None = None,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._routing = routing
        self.upload_dir = upload_dir  # for the web server's temporary files
        self._on_stored = on_stored  # wakes the notifier

    @classmethod
    def from_settings(
        cls, settings: Settings, store: Store, *, on_stored: Callable[[], None]
    ) -> InboundReceiver:
        """The daemon's receiver; ValueError (in plain words) when a route is unreadable."""
        return cls(
            store,
            Spool(settings.spool_dir),
            routing_from_settings(settings),
            upload_dir=prepare_upload_dir(settings.state_dir),
            on_stored=on_stored,
        )

    @property
    def routing(self) -> RoutingTable:
        return self._routing

    def reroute(self, routing: RoutingTable) -> None:
        """Route faxes by a new table from now on (a reload); a fax being stored keeps the
        route it was given."""
        self._routing = routing

    async def __call__(self, transaction: dict[str, Any], files: list[tuple[str, Path]]) -> None:
        tx = Transmission.from_api(transaction)
        if transaction.get("IsInbound") is False:
            # An outbound report posted to the inbound URL: nothing came in. Answered 200,
            # or the provider would send it again for hours.
            metrics.inbound_received.labels(result="ignored").inc()
            log.warning("inbound callback ignored: IsInbound is false guid=%s", tx.guid)
            return
        known = await asyncio.to_thread(self._store.find_inbound_by_guid, tx.guid)
        if known is not None:
            self._duplicate(known.id, tx.guid)
            return

        document, note = await asyncio.to_thread(self._keep_document, files)
        try:
            pages = await _pages(tx, document)
            to = number_from_provider(tx.to) or tx.to
            sender = number_from_provider(tx.from_)
            route = self._routing.route(e164_or_none(to), e164_or_none(sender))
            fax, created = await asyncio.to_thread(
                self._store.record_inbound,
                NewInboundFax(
                    provider_guid=tx.guid,
                    to_number=to,
                    from_number=sender,
                    pages=pages,
                    arrived_at=tx.created_at,
                    route=route.name,
                    document=document,
                    note=note,
                    transaction=transaction,
                ),
                [delivery_for(target) for target in route.targets()],
            )
        except Exception:
            # Nothing was recorded: the provider hears 503 and sends the fax again.
            if document is not None:
                await asyncio.to_thread(self._spool.remove, document.path)
            raise
        if not created:  # a copy that came in while this one was being stored
            if document is not None:
                await asyncio.to_thread(self._spool.remove, document.path)
            self._duplicate(fax.id, tx.guid)
            return

        metrics.inbound_received.labels(
            result="stored" if document else "stored_without_document"
        ).inc()
        log.info(
            "inbound fax stored id=%s guid=%s from=%s to=%s pages=%s route=%s document=%s",
            fax.id,
            fax.provider_guid,
            fax.from_number or "unknown",
            fax.to_number,
            fax.pages if fax.pages is not None else "?",
            fax.route,
            "yes" if document else f"no ({note})",
        )
        if not route.targets():
            log.warning(
                "inbound fax has no route that delivers it fax=%s: set [inbound] "
                "default_email or default_folder; it stays in the spool (see `faxgate inbox`)",
                fax.id,
            )
        self._on_stored()

    def _duplicate(self, fax_id: str, guid: str) -> None:
        metrics.inbound_received.labels(result="duplicate").inc()
        log.info("inbound fax already stored id=%s guid=%s", fax_id, guid)

    # ------------------------------------------------------------------ the document

    def _keep_document(
        self, files: Sequence[tuple[str, Path]]
    ) -> tuple[ReceivedDocument | None, str | None]:
        """Move the first document among the files into the spool (blocking)."""
        parts = [_examine(index, path) for index, (_, path) in enumerate(files)]
        choice = choose_document(parts)
        if choice.kept is None or choice.kept.kind is None:
            return None, choice.note
        path = files[choice.kept.index][1]
        return self._into_spool(path, choice.kept.kind), choice.note

    def _into_spool(self, path: Path, kind: DocumentKind) -> ReceivedDocument:
        try:
            spooled = self._spool.adopt(path, suffix=kind.suffix)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            # The upload folder is on another file system: copy instead (fsynced too).
            with path.open("rb") as stream:
                spooled = self._spool.store_stream(stream, suffix=kind.suffix)
        return ReceivedDocument(spooled.path, spooled.size, spooled.sha256, kind.content_type)


def _examine(index: int, path: Path) -> FilePart:
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    return FilePart(index=index, size=path.stat().st_size, kind=document_kind(head))


async def _pages(tx: Transmission, document: ReceivedDocument | None) -> int | None:
    """The provider's page count; else, for a PDF, the pages it holds."""
    if tx.num_pages_billed is not None and tx.num_pages_billed > 0:
        return tx.num_pages_billed
    if document is None or document.content_type != PDF.content_type:
        return None
    return await asyncio.to_thread(_count_pdf_pages, document.path)


def _count_pdf_pages(path: Path) -> int | None:
    try:
        return len(PdfReader(path).pages) or None
    except Exception:  # pypdf raises many kinds on a damaged file
        return None  # a page count is a courtesy; a damaged PDF is still delivered
