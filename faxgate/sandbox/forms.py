"""What every face reads alike: numbers, uploads, URLs, flags, page numbers, and the
refusal a face renders in its own error shape."""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import BasicAuth, BodyPartReader, hdrs, web
from multidict import MultiDict

from faxgate.sandbox.limits import MAX_BYTES_PER_SEND, MAX_FILES_PER_SEND
from faxgate.sandbox.records import CoverPage

_NUMBER_PUNCTUATION = re.compile(r"[\s\-.()/]")
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 1000
TOO_LARGE = f"Files too large: at most {MAX_BYTES_PER_SEND // (1024 * 1024)} MB per fax"


class RequestError(Exception):
    """A request the provider would refuse: answered with `status` and `message`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


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
    title: str | None = None  # v3 only
    test_mode: bool = False  # v3 only: nothing dialled or billed


def json_object(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestError(400, "Send a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError(400, "Send a JSON object")
    return body


async def read_multipart(
    request: web.Request, file_field: re.Pattern[str], file_names: str
) -> tuple[MultiDict[str], list[Upload]]:
    """Query and form fields, and the files of parts named as `file_field` matches (its
    group: an index, files with one first in index order); too many files or bytes are
    refused as soon as they show."""
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
        match = file_field.match(name)
        if match is None:
            raise RequestError(400, f"Unexpected file part {name!r}: use {file_names}")
        if len(ordered_files) >= MAX_FILES_PER_SEND:
            raise RequestError(400, f"Too many files: at most {MAX_FILES_PER_SEND} files per fax")
        content = await read_part(part, MAX_BYTES_PER_SEND - total_bytes, TOO_LARGE)
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


def basic_auth_matches(request: web.Request, login: str, password: str) -> bool:
    """Whether the request's Basic credentials are these, compared in constant time."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if not header:
        return False
    try:
        credentials = BasicAuth.decode(header, encoding="utf-8")
    except ValueError:
        return False
    login_ok = hmac.compare_digest(credentials.login.encode(), login.encode())
    password_ok = hmac.compare_digest(credentials.password.encode(), password.encode())
    return login_ok and password_ok
