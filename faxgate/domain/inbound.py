"""Inbound faxes as the store keeps them, and what the receiver hands it. Values only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

# The outbox kind of an inbound fax's delivery; the notifier's handler has this name.
NOTIFICATION_KIND: Final = "inbound"


@dataclass(frozen=True, slots=True)
class ReceivedDocument:
    """The fax's document in the spool; its name there is faxgate's, never the sender's."""

    path: Path
    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NewInboundFax:
    provider_guid: str
    to_number: str  # E.164 when readable, else as the provider wrote it
    from_number: str | None  # likewise; None when the provider did not say
    pages: int | None
    arrived_at: datetime | None  # the provider's CreatedAt
    route: str  # the name of the route it took
    document: ReceivedDocument | None  # None: the callback brought none we could keep
    note: str | None = None  # why there is no document, or what was left out
    transaction: Mapping[str, Any] = field(default_factory=dict)  # as the provider sent it


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundFax:
    id: str  # faxgate's id, in the job id format
    received_at: datetime  # when faxgate stored it
    provider_guid: str
    to_number: str
    from_number: str | None
    pages: int | None
    arrived_at: datetime | None
    route: str
    document: ReceivedDocument | None
    note: str | None
    transaction: Mapping[str, Any] = field(default_factory=dict)
    # When [retention] documents removed its document (the row and its facts stay).
    removed_at: datetime | None = None

    @property
    def when(self) -> datetime:
        """When the fax came in: the provider's time when it gave one."""
        return self.arrived_at or self.received_at


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """One delivery owed: its outbox row carries `payload` (plus the fax id and seq)."""

    kind: str  # "email" or "folder"
    target: str  # the recipients or the folder, as people read them
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundDelivery:
    fax_id: str
    seq: int  # from 0, in the route's order
    kind: str
    target: str
    outbox_id: int | None
    delivered_at: datetime | None = None
    detail: str | None = None  # the file written, the Message-ID of the mail
    attempts: int = 0
    last_error: str | None = None
    given_up: bool = False

    @property
    def state(self) -> str:
        if self.delivered_at is not None:
            return "delivered"
        if self.given_up:
            return "given up"
        return "failing" if self.last_error else "pending"
