"""The v3 callbacks: signed events to the account's one callback URL, received when
answered with the answer text; an inbound fax announced without its file (GUESSED: the
description does not say, so the client downloads it by `fax_id`)."""

from __future__ import annotations

import time

from faxgate.dropbox_fax.events import EVENT_ANSWER
from faxgate.dropbox_fax.sandbox.shapes import event, event_type
from faxgate.sandbox.records import AccountRecord, TransmissionRecord


class DropboxFaxWire:
    document_part: str | None = None

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key
        self.origin = ""  # scheme://host:port of the API, set once it listens

    def outbound_url(self, account: AccountRecord) -> str | None:
        return account.event_callback_url

    def inbound_url(self, account: AccountRecord) -> str | None:
        return account.event_callback_url

    def outbound_payload(self, record: TransmissionRecord) -> str | None:
        kind = event_type(record)
        return None if kind is None else self._event(record, kind)

    def inbound_payload(self, record: TransmissionRecord) -> str:
        kind = event_type(record)
        assert kind is not None, "an inbound fax is always announced"
        return self._event(record, kind)

    def accepts(self, status: int, body: str) -> bool:
        # The provider looks for its phrase in the answer; anything else is retried.
        return status == 200 and EVENT_ANSWER in body

    def _event(self, record: TransmissionRecord, kind: str) -> str:
        return event(record, kind, api_key=self._api_key, at=time.time(), origin=self.origin)
