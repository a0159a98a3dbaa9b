"""Reading the provider's request parameters: query string and form, numbers, uploads.

Parameter names are CONFIRMED by the provider's getting-started page.
"""

from __future__ import annotations

import re

from aiohttp import web
from multidict import MultiDict

from faxgate.sandbox import forms
from faxgate.sandbox.forms import RequestError, read_multipart
from faxgate.sandbox.records import CoverPage

_ACCOUNT_FIELDS = {
    "DefaultInboundFaxCallbackUrl": "inbound_callback_url",
    "DefaultOutboundFaxCallbackUrl": "outbound_callback_url",
}
_ACCOUNT_FLAGS = {
    "ShouldSendOutboundConfEmails": "send_confirmation_emails",
    "ShouldIncludePdfsInReceivedFaxEmails": "include_pdfs_in_received_emails",
}
_FILE_FIELD = re.compile(r"^file(?:\[(\d*)\])?$")
_TO_FIELD = re.compile(r"^To(?:\[(\d*)\])?$")


async def read_fields(request: web.Request) -> MultiDict[str]:
    """Query parameters and (url-encoded or multipart) form fields, form last."""
    fields: MultiDict[str] = MultiDict(request.query)
    if request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                fields.add(key, value)
    return fields


async def read_send(request: web.Request) -> forms.SendRequest:
    """A send's parameters; refuses too many files or bytes as soon as they show."""
    if request.content_type == "multipart/form-data":
        fields, files = await read_multipart(request, _FILE_FIELD, "file, file[] or file[N]")
    else:
        fields, files = await read_fields(request), []
    return forms.SendRequest(
        to=_destinations(fields),
        from_=_last(fields, "From"),
        files=files,
        cover=CoverPage(
            to=_last(fields, "CoverPageTo"),
            from_=_last(fields, "CoverPageFrom"),
            message=_last(fields, "CoverPageMessage"),
        ),
    )


def _destinations(fields: MultiDict[str]) -> list[str]:
    ordered: list[tuple[tuple[int, int], str]] = []
    for arrival, (key, value) in enumerate(fields.items()):
        match = _TO_FIELD.match(key)
        if match is None:
            continue
        index = match.group(1)
        ordered.append(((0, int(index)) if index else (1, arrival), value))
    raw_numbers = [value for _, value in sorted(ordered, key=lambda item: item[0])]
    if not raw_numbers or not any(value.strip() for value in raw_numbers):
        raise RequestError(400, "Missing To: the destination fax number")
    numbers = []
    for raw in raw_numbers:
        number = forms.normalize_number(raw)
        if number is None:
            raise RequestError(400, f"Invalid To {raw!r}: give the fax number in digits")
        numbers.append(number)
    return numbers


def _last(fields: MultiDict[str], key: str) -> str | None:
    values = [value for value in fields.getall(key, []) if value.strip()]
    return values[-1].strip() if values else None


def account_changes(fields: MultiDict[str]) -> dict[str, object]:
    """The account's v1 field names as the sandbox's account columns."""
    changes: dict[str, object] = {}
    for field, column in _ACCOUNT_FIELDS.items():
        if field in fields:
            changes[column] = forms.callback_url(fields.getall(field)[-1])
    for field, column in _ACCOUNT_FLAGS.items():
        if field in fields:
            changes[column] = int(forms.boolean(fields.getall(field)[-1], field))
    return changes
