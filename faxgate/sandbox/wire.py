"""What a face tells the shared simulation: its callbacks' bodies, where they go, and what
answer counts as received. The simulation decides when; the face decides how it looks."""

from __future__ import annotations

from typing import Protocol

from faxgate.sandbox.records import AccountRecord, TransmissionRecord

# Both APIs post callbacks as multipart/form-data with the payload in a part named `json`.
CALLBACK_JSON_PART = "json"


class Wire(Protocol):
    # The name of the file part an inbound fax's document travels in; None: no file part.
    document_part: str | None

    def outbound_url(self, account: AccountRecord) -> str | None:
        """Where results of sent faxes go; None: nowhere (no callback at all)."""

    def inbound_url(self, account: AccountRecord) -> str | None:
        """Where received faxes are announced; None: nowhere."""

    def outbound_payload(self, record: TransmissionRecord) -> str | None:
        """The `json` part for a fax that just moved; None: this move is not announced."""

    def inbound_payload(self, record: TransmissionRecord) -> str:
        """The `json` part announcing a received fax."""

    def accepts(self, status: int, body: str) -> bool:
        """Whether the receiver's answer counts as received (else it is retried)."""
