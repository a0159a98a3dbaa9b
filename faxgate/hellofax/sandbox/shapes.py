"""Every JSON shape the sandbox answers with, and every guess about them, in one place.

CONFIRMED shapes follow the provider's own examples; GUESSED ones (marked) follow
docs/hellofax notes, and are the ones to change if the real API turns out otherwise.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from faxgate.sandbox.lifecycle import billed_pages
from faxgate.sandbox.paging import Paging
from faxgate.sandbox.records import AccountRecord, TransmissionRecord

JsonObject = dict[str, Any]

API_PREFIX = "/v1"

# CONFIRMED: the provider's message with its 429. GUESSED: the body is this plain text.
RATE_LIMIT_MESSAGE = (
    "Please wait. You already have at least 200 transmissions that are currently pending or "
    "transmitting."
)

# REPORTED: the answer for a transmission the provider removed (or never had).
NOT_FOUND_MESSAGE = "Transmission not found or not accessible."
# GUESSED: how an inbound fax's document travels; a PDF file part with this name.
INBOUND_DOCUMENT_PART = "file"


def account_uri(account_guid: str) -> str:
    return f"{API_PREFIX}/Accounts/{account_guid}"


def fax_line_uri(account_guid: str, number: str) -> str:
    return f"{account_uri(account_guid)}/FaxLines/{number}"


def transmissions_uri(account_guid: str) -> str:
    return f"{account_uri(account_guid)}/Transmissions"


def transmission_uri(account_guid: str, guid: str) -> str:
    return f"{transmissions_uri(account_guid)}/{guid}"


def account(record: AccountRecord) -> JsonObject:
    """CONFIRMED field names."""
    return {
        "Account": {
            "Guid": record.guid,
            "DefaultOutboundFaxCallbackUrl": record.outbound_callback_url,
            "DefaultInboundFaxCallbackUrl": record.inbound_callback_url,
            "ShouldSendOutboundConfEmails": record.send_confirmation_emails,
            "ShouldIncludePdfsInReceivedFaxEmails": record.include_pdfs_in_received_emails,
        }
    }


def fax_line(account_guid: str, number: str) -> JsonObject:
    """GUESSED item shape."""
    return {"Number": number, "Uri": fax_line_uri(account_guid, number)}


def fax_lines(account_guid: str, numbers: list[str]) -> JsonObject:
    """CONFIRMED top key, GUESSED items."""
    return {"FaxLines": [fax_line(account_guid, number) for number in numbers]}


def bought_fax_line(account_guid: str, number: str) -> JsonObject:
    """GUESSED: the answer to buying a line is the new line."""
    return {"FaxLine": fax_line(account_guid, number)}


def deleted() -> JsonObject:
    """GUESSED: only the 200 is documented."""
    return {}


def area_codes(codes: list[int]) -> JsonObject:
    """GUESSED."""
    return {"AreaCodes": codes}


def transmission(record: TransmissionRecord) -> JsonObject:
    """The transmission object, CONFIRMED from the provider's callback example."""
    return {
        "Guid": record.guid,
        "To": record.to,
        "From": record.from_,
        "IsInbound": record.is_inbound,
        "IsDraft": False,
        "TypeCode": "F",
        "StatusCode": record.status,
        "ErrorCode": record.error_code if record.status == "E" else None,
        "CreatedAt": str(int(record.created_at)),
        "UpdatedAt": str(int(record.updated_at)),
        "Uri": transmission_uri(record.account_guid, record.guid),
        "NumPagesBilled": billed_pages(record.status, record.pages),
    }


def one_transmission(record: TransmissionRecord) -> JsonObject:
    """GET one: wrapped in `Transmission`, as code that polled the live API read it."""
    return {"Transmission": transmission(record)}


def send_answer(records: list[TransmissionRecord]) -> JsonObject:
    """GUESSED: one object for one To, a list for several (one per To)."""
    if len(records) == 1:
        return one_transmission(records[0])
    return {"Transmissions": [transmission(record) for record in records]}


def callback(record: TransmissionRecord) -> str:
    """The `json` part of a callback (CONFIRMED wrapper `Transaction`), as text."""
    return json.dumps({"Transaction": transmission(record)}, separators=(",", ":"))


def not_found() -> JsonObject:
    """The body of the 404: the provider's own shape, not the sandbox's usual error shape."""
    return {"status_code": 404, "message": NOT_FOUND_MESSAGE}


def error(message: str, status: int) -> JsonObject:
    """GUESSED: JSON errors carry a message and the status; the 429 is plain text instead."""
    return {"error": {"message": message, "code": status}}


def transmission_list(
    account_guid: str, records: list[TransmissionRecord], paging: Paging
) -> JsonObject:
    """GUESSED list envelope; items bare; links relative; absent pages are null. GUESSED
    paging: Page counts from 0; End is exclusive, like a slice."""
    base = transmissions_uri(account_guid)

    def page_uri(page: int) -> str:
        return f"{base}?{urlencode({'Page': page, 'PageSize': paging.page_size})}"

    has_previous = paging.page > 0
    has_next = paging.page < paging.last_page
    return {
        "Transmissions": [transmission(record) for record in records],
        "Page": paging.page,
        "NumPages": paging.num_pages,
        "PageSize": paging.page_size,
        "Total": paging.total,
        "Start": paging.start,
        "End": paging.end,
        "Uri": page_uri(paging.page),
        "FirstPageUri": page_uri(0),
        "PreviousPageUri": page_uri(min(paging.page - 1, paging.last_page))
        if has_previous
        else None,
        "NextPageUri": page_uri(paging.page + 1) if has_next else None,
        "LastPageUri": page_uri(paging.last_page),
    }
