"""Delivering an inbound fax: the notifier's handler for its outbox rows.

Each delivery a route owes (one mail to its recipients, one folder) has its own outbox
row, so they are tried, retried and given up independently: a full disk never sends the
mail twice. The notifier retries a failed delivery with a growing delay and survives
restarts (see faxgate/notify/notifier.py).

Delivered once: a folder write is idempotent by name (faxgate.inbound.folder). A mail is
sent at least once; the delivery is marked done in the store right after the mailer took
it, and a row found marked is not sent again, so only a crash in the instant between
sending and marking sends it twice, and then with the same Message-ID, which mail
programs fold into one.

The mail shows page 1 reduced ([inbound] page_image), drawn in a capped process of its
own (faxgate.notify.confirmation.PageDrawer): a page that cannot be drawn (a truncated
PDF, a bomb, one that takes too long) gets the mail without the image and a note saying
why, never a lost delivery.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.inbound import InboundFax
from faxgate.domain.jobs import Job, Notification
from faxgate.inbound.compose import (
    PAGE_IMAGE_PIXELS,
    PageImage,
    compose_mail,
    message_id,
    names_by_number,
)
from faxgate.inbound.folder import DocumentMissing, write_to_folder
from faxgate.intake.contacts import ContactsUnreadable, read_address_book
from faxgate.notify.confirmation import PageDrawer
from faxgate.notify.mailer import Mailer, address_domain
from faxgate.notify.reporter import PermanentFailure
from faxgate.notify.thumbnail import drawable
from faxgate.settings import Settings
from faxgate.store import Store
from faxgate.workers import WorkerFailed

log = logging.getLogger("faxgate.inbound")


class InboundDeliverer:
    """The notifier's handler for "inbound" rows (faxgate.notify.notifier.Reporter)."""

    def __init__(
        self,
        store: Store,
        mailer: Mailer,
        *,
        from_address: str,
        clock: Callable[[], datetime] = utc_now,
        drawer: PageDrawer | None = None,
        contacts: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """`drawer` draws page 1 into the mail (None: no image); `contacts` gives the
        senders' names by E.164 number (blocking: it is called in a thread)."""
        self._store = store
        self._mailer = mailer
        self._domain = address_domain(from_address)
        self._clock = clock
        self._drawer = drawer
        self._contacts = contacts

    async def __call__(self, notification: Notification, job: Job | None) -> None:
        fax_id, seq = _address(notification.payload)
        fax = await asyncio.to_thread(self._store.get_inbound, fax_id)
        if fax is None:
            raise PermanentFailure(f"inbound fax {fax_id} is no longer in the store")
        deliveries = await asyncio.to_thread(self._store.inbound_deliveries, fax_id)
        delivery = next((d for d in deliveries if d.seq == seq), None)
        if delivery is None:
            raise PermanentFailure(f"inbound fax {fax_id} owes no delivery {seq}")
        if delivery.delivered_at is not None:
            # Done before a crash stopped the notifier from marking its row.
            log.info("inbound delivery already done fax=%s seq=%d", fax_id, seq)
            return

        kind = notification.payload.get("kind")
        if kind == "email":
            detail = await self._mail(fax, seq, notification.payload)
        elif kind == "folder":
            detail = await self._write(fax, notification.payload)
        else:
            raise PermanentFailure(f"unknown inbound delivery kind {kind!r}")
        await asyncio.to_thread(
            self._store.mark_inbound_delivered, fax_id, seq, detail=detail, now=self._clock()
        )
        metrics.inbound_delivered.labels(kind=kind).inc()
        log.info(
            "inbound fax delivered id=%s kind=%s to=%s detail=%s",
            fax_id,
            kind,
            delivery.target,
            detail,
        )

    async def _mail(self, fax: InboundFax, seq: int, payload: Mapping[str, Any]) -> str:
        recipients = payload.get("recipients")
        if not isinstance(recipients, list) or not recipients:
            raise PermanentFailure("the delivery names no recipients")
        document = None
        if fax.document is not None:
            try:
                document = await asyncio.to_thread(fax.document.path.read_bytes)
            except FileNotFoundError:
                raise PermanentFailure(
                    f"the document {fax.document.path} is missing from the spool"
                ) from None
        message = compose_mail(
            fax,
            [str(r) for r in recipients],
            document,
            message_id=message_id(fax, seq, self._domain),
            name=await self._name(fax),
            page=await self._page(fax) if document is not None else None,
        )
        await self._mailer.send(message)
        return str(message["Message-ID"])

    async def _name(self, fax: InboundFax) -> str | None:
        if self._contacts is None or fax.from_number is None:
            return None
        names = await asyncio.to_thread(self._contacts)
        return names.get(fax.from_number)

    async def _page(self, fax: InboundFax) -> PageImage | None:
        """Page 1 reduced, or the note standing in for it; None when the image is off."""
        if self._drawer is None or fax.document is None:
            return None
        content_type = fax.document.content_type
        if not drawable(content_type):
            return PageImage(None, f"No image of page 1: faxgate does not draw {content_type}.")
        try:
            png = await self._drawer.first_page(fax.document.path, content_type, *PAGE_IMAGE_PIXELS)
        except (WorkerFailed, OSError) as exc:  # OSError: no process could be started
            log.warning("no image of page 1 of inbound fax %s: %s", fax.id, exc)
            return PageImage(
                None, f"No image of page 1: it could not be drawn ({exc}). The fax is attached."
            )
        return PageImage(png)

    async def _write(self, fax: InboundFax, payload: Mapping[str, Any]) -> str:
        folder = payload.get("folder")
        if not isinstance(folder, str) or not folder:
            raise PermanentFailure("the delivery names no folder")
        try:
            written = await asyncio.to_thread(write_to_folder, Path(folder), fax)
        except DocumentMissing as exc:
            raise PermanentFailure(str(exc)) from None
        # Anything else (a full disk, a permission) is temporary: a person can fix it.
        return str(written)


async def inbound_deliverer(
    settings: Settings, store: Store, mailer: Mailer, drawer: PageDrawer
) -> InboundDeliverer:
    """The handler as the settings ask: page 1 drawn by `drawer` unless [inbound]
    page_image is off, senders named from the contacts file."""
    addressing = settings.addressing
    policy = settings.numbers.policy()

    def contacts() -> Mapping[str, str]:
        # Read for each mail (a small file, a few faxes an hour): an edited file counts
        # at once, as it does for the SMTP listener after a reload.
        if not addressing.contacts_file:
            return {}
        try:
            book = read_address_book(addressing.contacts_file, policy, addressing.max_group_size)
        except ContactsUnreadable as exc:  # the SMTP listener's log says so too
            log.warning("inbound mail names no sender: %s", exc)
            return {}
        return names_by_number(book)

    return InboundDeliverer(
        store,
        mailer,
        from_address=settings.mail.from_address,
        drawer=drawer if settings.inbound.page_image else None,
        contacts=contacts,
    )


def _address(payload: Mapping[str, Any]) -> tuple[str, int]:
    fax_id, seq = payload.get("fax_id"), payload.get("seq")
    if not isinstance(fax_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise PermanentFailure("the notification names no inbound fax")
    return fax_id, seq
