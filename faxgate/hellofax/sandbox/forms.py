"""Reading the provider's request parameters: query string and form, numbers, uploads.

Parameter names are CONFIRMED by the provider's getting-started page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from multidict import MultiDict

from faxgate.hellofax.sandbox.limits import MAX_BYTES_PER_SEND, MAX_FILES_PER_SEND
from faxgate.hellofax.sandbox.records import CoverPage

_FILE_FIELD = re.compile(r"^file(?:\[(\d*)\])?$")
_TO_FIELD = re.compile(r"^To(?:\[(\d*)\])?$")
_NUMBER_PUNCTUATION = re.compile(r"[\s\-.()/]")
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 1000
_TOO_LARGE = f"Files too large: at most {MAX_BYTES_PER_SEND // (1024 * 1024)} MB per fax"


class RequestError(Exception):
    """A request the provider would refuse: answered with `status` and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def normalize_number(raw: str) -> str | None:
    """Digits with country code; `+`, spaces, dashes, dots and brackets are dropped.

    Ten digits that look like a North American number get the leading 1 (a guess at the
    provider's leniency). Anything else that is not 7 to 15 digits is refused (None).
    """
    digits = _NUMBER_PUNCTUATION.sub("", raw.strip())
    digits = digits.removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return None
    if len(digits) == 10 and digits[0] in "23456789":
        digits = "1" + digits
    return digits if 7 <= len(digits) <= 15 else None


@dataclass(frozen=True)
class Upload:
    name: str
    content: bytes


@dataclass(frozen=True)
class SendRequest:
    to: list[str]
    from_: str | None
    files: list[Upload]
    cover: CoverPage


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
        content = await read_part(part, MAX_BYTES_PER_SEND - total_bytes, _TOO_LARGE)
        total_bytes += len(content)
        index = match.group(1)
        order = (0, int(index)) if index else (1, len(ordered_files))
        ordered_files.append((order, Upload(part.filename or "document", content)))
    files = [upload for _, upload in sorted(ordered_files, key=lambda item: item[0])]
    return fields, files


async def read_part(part: BodyPartReader, limit: int, too_large: str) -> bytes:
    """A part's bytes, refused (400 with `too_large`) as soon as they pass `limit`."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise RequestError(400, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


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


def callback_url(raw: str) -> str | None:
    """An absolute http(s) URL, or None for an empty value (which clears the setting)."""
    value = raw.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(400, f"Invalid callback URL {value!r}: give an http(s) URL")
    return value


def boolean(raw: str, name: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise RequestError(400, f"Invalid {name} {raw!r}: give true or false")


def page_parameter(raw: str | None, name: str, default: int, minimum: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(400, f"Invalid {name} {raw!r}: give a whole number") from None
    if value < minimum:
        raise RequestError(400, f"Invalid {name} {raw!r}: at least {minimum}")
    return value
