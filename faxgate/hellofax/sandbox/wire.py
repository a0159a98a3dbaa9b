"""The v1 callbacks: a `Transaction` in the `json` part, received when answered with 200."""

from __future__ import annotations

from faxgate.hellofax.sandbox.shapes import INBOUND_DOCUMENT_PART, callback
from faxgate.sandbox.lifecycle import ERROR, SENT
from faxgate.sandbox.records import AccountRecord, TransmissionRecord

# The provider documents callbacks for S and E only; H is found by polling.
CALLBACK_STATUSES = frozenset({SENT, ERROR})


class HelloFaxWire:
    document_part: str | None = INBOUND_DOCUMENT_PART

    def outbound_url(self, account: AccountRecord) -> str | None:
        return account.outbound_callback_url

    def inbound_url(self, account: AccountRecord) -> str | None:
        return account.inbound_callback_url

    def outbound_payload(self, record: TransmissionRecord) -> str | None:
        return callback(record) if record.status in CALLBACK_STATUSES else None

    def inbound_payload(self, record: TransmissionRecord) -> str:
        return callback(record)

    def accepts(self, status: int, body: str) -> bool:
        return status == 200
