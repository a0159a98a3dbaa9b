"""Reading the provider's request parameters: query string and form, numbers, uploads.

Parameter names are CONFIRMED by the provider's getting-started page.
"""

from __future__ import annotations

import re

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from faxgate.sandbox.forms import (
    MAX_FIELD_BYTES,
    MAX_FIELDS,
    TOO_LARGE,
    RequestError,
    SendRequest,
    Upload,
    boolean,
    callback_url,
    normalize_number,
    read_part,
)
from faxgate.sandbox.limits import MAX_BYTES_PER_SEND, MAX_FILES_PER_SEND
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


async def read_send(request: web.Request) -> SendRequest:
    """A send's parameters; refuses too many files or bytes as soon as they show."""
    if request.content_type == "multipart/form-data":
        fields, files = await _read_multipart_send(request)
    else:
        fields, files = await read_fields(request), []
    return SendRequest(
        to=_destinations(fields),
        from_=_last(fields, "From"),
        files=files,
        cover=CoverPage(
            to=_last(fields, "CoverPageTo"),
            from_=_last(fields, "CoverPageFrom"),
            message=_last(fields, "CoverPageMessage"),
        ),
    )


async def _read_multipart_send(request: web.Request) -> tuple[MultiDict[str], list[Upload]]:
    fields: MultiDict[str] = MultiDict(request.query)
    ordered_files: list[tuple[tuple[int, int], Upload]] = []
    total_bytes = 0
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise RequestError(400, "Nested multipart bodies are not supported")
        name = part.name or ""
        if part.filename is None:
            if len(fields) >= MAX_FIELDS:
                raise RequestError(400, "Too many form fields")
            value = await read_part(part, MAX_FIELD_BYTES, f"Form field {name!r} is too long")
            fields.add(name, value.decode())
            continue
        match = _FILE_FIELD.match(name)
        if match is None:
            raise RequestError(400, f"Unexpected file part {name!r}: use file, file[] or file[N]")
        if len(ordered_files) >= MAX_FILES_PER_SEND:
            raise RequestError(400, f"Too many files: at most {MAX_FILES_PER_SEND} files per fax")
        content = await read_part(part, MAX_BYTES_PER_SEND - total_bytes, TOO_LARGE)
        total_bytes += len(content)
        index = match.group(1)
        order = (0, int(index)) if index else (1, len(ordered_files))
        ordered_files.append((order, Upload(part.filename or "document", content)))
    files = [upload for _, upload in sorted(ordered_files, key=lambda item: item[0])]
    return fields, files


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
        number = normalize_number(raw)
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
            changes[column] = callback_url(fields.getall(field)[-1])
    for field, column in _ACCOUNT_FLAGS.items():
        if field in fields:
            changes[column] = int(boolean(fields.getall(field)[-1], field))
    return changes
