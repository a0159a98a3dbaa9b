"""Reading v3 requests: a send (multipart, form or JSON), and the JSON bodies of the fax
line calls. Field names follow the description's request schemas."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from aiohttp import web

from faxgate.sandbox.forms import (
    TOO_LARGE,
    RequestError,
    SendRequest,
    Upload,
    boolean,
    json_object,
    normalize_number,
    read_multipart,
)
from faxgate.sandbox.limits import MAX_BYTES_PER_SEND, MAX_FILES_PER_SEND
from faxgate.sandbox.records import CoverPage

_FILES = re.compile(r"^files(?:\[(\d*)\])?$")
_FILE_URLS = re.compile(r"^file_urls(?:\[(\d*)\])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FETCH_TIMEOUT = 30.0


async def read_fields(request: web.Request) -> dict[str, list[Any]]:
    """Query, then a JSON object or form fields: each name with all its values."""
    fields: dict[str, list[Any]] = {}
    for key, value in request.query.items():
        fields.setdefault(key, []).append(value)
    if not request.can_read_body:
        return fields
    if request.content_type == "application/json":
        for key, value in json_object(await request.text()).items():
            fields.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    else:
        for key, item in (await request.post()).items():
            if isinstance(item, str):
                fields.setdefault(key, []).append(item)
    return fields


def text(fields: dict[str, list[Any]], *names: str) -> str | None:
    """The last non-blank value under any of `names`, as text."""
    values = [str(v).strip() for name in names for v in fields.get(name, []) if v is not None]
    values = [value for value in values if value]
    return values[-1] if values else None


async def read_send(request: web.Request) -> tuple[SendRequest, list[str]]:
    """A send's parameters and its `file_urls[]` (fetched by the caller)."""
    if request.content_type == "multipart/form-data":
        form, files = await read_multipart(request, _FILES, "files[]")
        fields: dict[str, list[Any]] = {}
        for key, value in form.items():
            fields.setdefault(key, []).append(value)
    else:
        fields, files = await read_fields(request), []
    urls = [str(v) for key, values in fields.items() if _FILE_URLS.match(key) for v in values]
    if files and urls:
        raise RequestError(400, "Give files[] or file_urls[], not both")
    if not files and not urls:
        raise RequestError(400, "Missing files[] or file_urls[]: the document to fax")
    mode = text(fields, "test_mode")
    send = SendRequest(
        to=[_recipient(text(fields, "recipient"))],
        from_=_sender(text(fields, "sender")),
        files=files,
        cover=CoverPage(
            to=text(fields, "cover_page_to"),
            from_=text(fields, "cover_page_from"),
            message=text(fields, "cover_page_message"),
        ),
        title=text(fields, "title"),
        test_mode=boolean(mode, "test_mode") if mode is not None else False,
    )
    return send, urls


async def fetch_files(urls: list[str]) -> list[Upload]:
    """`file_urls[]`: the provider downloads each document before accepting the fax."""
    if len(urls) > MAX_FILES_PER_SEND:
        raise RequestError(400, f"Too many files: at most {MAX_FILES_PER_SEND} files per fax")
    uploads = []
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in urls:
            try:
                async with session.get(url) as answer:
                    if answer.status != 200:
                        raise RequestError(400, f"Could not download {url}: HTTP {answer.status}")
                    content = await answer.content.read(MAX_BYTES_PER_SEND + 1)
            except (aiohttp.ClientError, TimeoutError, ValueError) as problem:
                raise RequestError(400, f"Could not download {url}: {problem}") from None
            if len(content) > MAX_BYTES_PER_SEND:
                raise RequestError(400, TOO_LARGE)
            uploads.append(Upload(url.rsplit("/", 1)[-1] or "document", content))
    return uploads


def _recipient(raw: str | None) -> str:
    """A fax number in E.164 (digits), or an email address (faxed by email)."""
    if raw is None:
        raise RequestError(400, "Missing recipient: the fax number (E.164) or email address")
    if "@" in raw:
        if _EMAIL.match(raw) is None:
            raise RequestError(400, f"Invalid recipient {raw!r}")
        return raw.lower()
    number = normalize_number(raw)
    if number is None:
        raise RequestError(400, f"Invalid recipient {raw!r}: give the fax number in E.164")
    return number


def _sender(raw: str | None) -> str | None:
    """The line to send from; an email address (the account's own) means the default line."""
    return None if raw is None or "@" in raw else raw
