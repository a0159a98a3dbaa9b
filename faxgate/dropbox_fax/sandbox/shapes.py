"""Every JSON shape the v3 sandbox answers or posts, and every guess about them, in one place.

FOLLOWED: hellosign/hellosign-openapi, openapi.yaml (FaxResponse, FaxResponseTransmission,
FaxLineResponseFaxLine, ListInfoResponse, ErrorResponse, AccountResponse, EventCallbackRequest)
and its test_fixtures/. GUESSED (marked): what the description leaves open, chiefly the fax
event types and how an inbound fax arrives.
"""

from __future__ import annotations

import json
from typing import Any, Final

from faxgate.dropbox_fax.codes import FaxStatus
from faxgate.dropbox_fax.events import event_hash
from faxgate.sandbox import lifecycle
from faxgate.sandbox.limits import MAX_PAGES
from faxgate.sandbox.paging import Paging
from faxgate.sandbox.records import AccountRecord, TransmissionRecord

JsonObject = dict[str, Any]

API_PREFIX: Final = "/v3"
# The error names of examples/json/Error*Response.json, by status.
ERROR_NAMES: Final[dict[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "deleted",
    422: "unprocessable_entity",
    429: "exceeded_rate",
}

# v1's error codes (the shared simulation's) as v3 status codes. L (blacklisted) has no v3
# code of its own: GUESSED as error_could_not_fax.
_FAILURES: Final[dict[str | None, FaxStatus]] = {
    "B": FaxStatus.ERROR_BUSY,
    "N": FaxStatus.ERROR_NO_ANSWER,
    "A": FaxStatus.ERROR_BAD_DESTINATION,
    "D": FaxStatus.ERROR_DISCONNECTED,
    "L": FaxStatus.ERROR_COULD_NOT_FAX,
}
# GUESSED event types: the names of the examples in later revisions of the description;
# `fax_error` for a failure none of them names.
_EVENT_TYPES: Final[dict[FaxStatus, str]] = {
    FaxStatus.SUCCESS: "fax_sent",
    FaxStatus.ERROR_BUSY: "fax_busy",
    FaxStatus.ERROR_NO_ANSWER: "fax_no_answer",
    FaxStatus.ERROR_DISCONNECTED: "fax_disconnected",
    FaxStatus.ERROR_COULD_NOT_FAX: "fax_blacklisted",
    FaxStatus.ON_HOLD: "fax_on_hold",
}
FAX_ERROR_EVENT: Final = "fax_error"
FAX_RECEIVED_EVENT: Final = "fax_received"


def status_code(record: TransmissionRecord) -> FaxStatus:
    """Where a transmission stands, in v3's words."""
    if record.status in lifecycle.IN_FLIGHT:
        return FaxStatus.TRANSMITTING
    if record.status == lifecycle.SENT:
        return FaxStatus.SUCCESS
    if record.status == lifecycle.ON_HOLD:
        return FaxStatus.ON_HOLD
    failure = _FAILURES.get(record.error_code)
    if failure is not None:
        return failure
    unreadable = any(not file.readable for file in record.files) or record.pages > MAX_PAGES
    return FaxStatus.ERROR_FILE if unreadable else FaxStatus.ERROR_UNKNOWN


def event_type(record: TransmissionRecord) -> str | None:
    """The event a move announces; None for moves v3 does not announce (transmitting)."""
    if record.is_inbound:
        return FAX_RECEIVED_EVENT
    code = status_code(record)
    if code is FaxStatus.TRANSMITTING:
        return None
    return _EVENT_TYPES.get(code, FAX_ERROR_EVENT)


def files_path(guid: str) -> str:
    return f"{API_PREFIX}/fax/files/{guid}"


def fax(record: TransmissionRecord, origin: str) -> JsonObject:
    """FaxResponse, with the extra keys test_fixtures/FaxResponse.json shows."""
    code = status_code(record)
    transmission: JsonObject = {"recipient": record.to, "status_code": code.value}
    if code is not FaxStatus.TRANSMITTING and code is not FaxStatus.ON_HOLD:
        transmission["sent_at"] = int(record.updated_at)
    title = record.title or (record.files[0].name if record.files else "")
    return {
        "fax_id": record.guid,
        "title": title,
        "original_title": title,
        "subject": None,  # GUESSED: a fax sent by the API has no subject
        "message": record.cover.message,  # GUESSED: the cover page message
        "metadata": {},
        "created_at": int(record.created_at),
        "sender": record.from_,
        "files_url": origin + files_path(record.guid),
        "final_copy_uri": files_path(record.guid),
        "transmissions": [transmission],
        "transmission_id": record.guid,
        "from": record.from_,
        "test_mode": record.test_mode,
    }


def fax_answer(record: TransmissionRecord, origin: str) -> JsonObject:
    return {"fax": fax(record, origin), "warnings": []}


def list_info(paging: Paging) -> JsonObject:
    """ListInfoResponse: pages count from 1."""
    return {
        "num_pages": paging.num_pages,
        "num_results": paging.total,
        "page": paging.page,
        "page_size": paging.page_size,
    }


def fax_list(records: list[TransmissionRecord], paging: Paging, origin: str) -> JsonObject:
    return {"faxes": [fax(record, origin) for record in records], "list_info": list_info(paging)}


def fax_line(
    number: str, bought_at: float, account: AccountRecord, email: str, users: list[str]
) -> JsonObject:
    """FaxLineResponseFaxLine: the owner first, then the users given the line."""
    owner = {"account_id": account.guid, "email_address": email}
    others = [
        {"email_address": user} if "@" in user else {"account_id": user}
        for user in users
        if user not in (account.guid, email)
    ]
    accounts = [
        {"is_locked": False, "is_paid_hs": False, "is_paid_hf": True, **item}
        for item in [owner, *others]
    ]
    created = int(bought_at)
    return {"number": number, "created_at": created, "updated_at": created, "accounts": accounts}


def account(record: AccountRecord, email: str) -> JsonObject:
    """AccountResponse, as far as a fax account fills it."""
    return {
        "account": {
            "account_id": record.guid,
            "email_address": email,
            "is_locked": False,
            "is_paid_hs": False,
            "is_paid_hf": True,
            "callback_url": record.event_callback_url,
            "role_code": None,
            "locale": "en-US",
        }
    }


def error(message: str, status: int) -> JsonObject:
    """ErrorResponse; a status the examples do not name is `unknown_error` (GUESSED)."""
    return {"error": {"error_msg": message, "error_name": ERROR_NAMES.get(status, "unknown_error")}}


def event(record: TransmissionRecord, kind: str, *, api_key: str, at: float, origin: str) -> str:
    """The `json` part of a callback (EventCallbackRequest): the event, signed, and the fax.

    GUESSED: the fax rides under `fax`, whole (with its `fax_id`), and `event_metadata`
    names it and the account as the signature events do.
    """
    event_time = str(int(at))
    payload = {
        "event": {
            "event_time": event_time,
            "event_type": kind,
            "event_hash": event_hash(api_key, event_time, kind),
            "event_metadata": {
                "related_fax_id": record.guid,
                "reported_for_account_id": record.account_guid,
            },
        },
        "account_guid": record.account_guid,
        "client_id": None,
        "fax": fax(record, origin),
    }
    return json.dumps(payload, separators=(",", ":"))
