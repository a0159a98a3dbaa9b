"""What both APIs' clients share on httpx: one connection pool with HTTP basic auth, the
requests counted, and documents as the parts of a multipart request (small files read at
once, so a missing file fails before anything is sent; large ones streamed)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, TypedDict, TypeVar, Unpack

import httpx

from faxgate import __version__
from faxgate.domain.provider import Closing, Upload
from faxgate.hellofax.errors import error_for_transport, read_answer

log = logging.getLogger(__name__)

_T = TypeVar("_T")

__all__ = ["ApiClient", "RequestParts", "UploadPart", "in_one_piece", "upload_parts"]

_CONNECT_TIMEOUT = 10.0
_LIMITS = httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=30.0)


class RequestParts(TypedDict, total=False):
    """What a request may carry besides its method and URL."""

    params: Mapping[str, Any] | None
    data: dict[str, str] | None
    files: list[UploadPart] | None
    json: dict[str, Any] | None
    headers: dict[str, str] | None


class ApiClient(Closing):
    """One API account's connection: its base URL, its pool with HTTP basic auth, and the
    calls counted by (endpoint name, HTTP status or exception class name) in
    `request_counts`; `on_request` hears of each (the daemon feeds its metrics from it)."""

    def __init__(
        self,
        api: str,
        base_url: str,
        auth: tuple[str, str],
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        user_agent: str | None,
        on_request: Callable[[str, int | str], None] | None,
    ) -> None:
        base = httpx.URL(base_url.strip())
        if base.scheme not in ("http", "https") or not base.host:
            raise ValueError(f"the {api} base URL must be an http or https URL")
        if base.userinfo:
            # Never echo the URL here: it holds the very credentials it must not.
            raise ValueError(f"the {api} base URL must not hold credentials")
        self._api = api
        self._base = str(base.copy_with(query=None, fragment=None)).rstrip("/")
        self._http = httpx.AsyncClient(
            auth=httpx.BasicAuth(*auth),
            headers={"User-Agent": user_agent or f"faxgate/{__version__}"}
            | {"Accept": "application/json"},
            timeout=httpx.Timeout(timeout, connect=min(timeout, _CONNECT_TIMEOUT)),
            limits=_LIMITS,
            transport=transport,
            follow_redirects=False,  # a redirect would carry the credentials elsewhere
        )
        self.request_counts: Counter[tuple[str, int | str]] = Counter()
        self._on_request = on_request

    @property
    def base_url(self) -> str:
        return self._base

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(
        self, endpoint: str, method: str, url: str, **parts: Unpack[RequestParts]
    ) -> httpx.Response:
        """One request, counted and logged; a transport failure becomes the seam's error.
        The answer, whatever its status, is the caller's to sort."""
        path = httpx.URL(url).path
        started = time.perf_counter()
        files = parts.get("files")
        try:
            request = self._http.build_request(method, url, **parts)
            if in_one_piece(files):
                request.read()  # the whole body written at once, not a write per part
            response = await self._http.send(request)
        except httpx.RequestError as exc:
            outcome = type(exc).__name__
            self._count(endpoint, outcome)
            log.debug(
                "%s %s: %s %s failed after %.0f ms: %s",
                *(self._api, endpoint, method, path, _elapsed_ms(started), outcome),
            )
            raise error_for_transport(
                exc, endpoint=endpoint, idempotent=method == "GET", scrub=self._scrub
            ) from exc
        self._count(endpoint, response.status_code)
        log.debug(
            "%s %s: %s %s -> %d in %.0f ms",
            *(self._api, endpoint, method, path, response.status_code, _elapsed_ms(started)),
        )
        return response

    def _read(self, endpoint: str, response: httpx.Response, parse: Callable[[Any], _T]) -> _T:
        return read_answer(endpoint, response, parse, self._scrub)

    def _scrub(self, text: str) -> str:
        """The text with the credentials taken out (each client knows its own)."""
        return text

    def _count(self, endpoint: str, outcome: int | str) -> None:
        self.request_counts[(endpoint, outcome)] += 1
        if self._on_request is not None:
            self._on_request(endpoint, outcome)


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


UploadPart = tuple[str, tuple[str, IO[bytes] | bytes, str]]

# Files up to this size are read into memory and sent in one piece; larger ones stream.
_IN_MEMORY = 1024 * 1024


def upload_parts(
    files: Sequence[Upload], names: Sequence[str], opened: contextlib.ExitStack
) -> list[UploadPart]:
    """Each file as a part under its field name; large files are opened in `opened`."""
    contents = [_content(upload, opened) for upload in files]
    return [
        (field, (_plain_name(upload.name), content, upload.content_type))
        for field, upload, content in zip(names, files, contents, strict=True)
    ]


def in_one_piece(files: list[UploadPart] | None) -> bool:
    """Whether every part is in memory, so the whole body can be written at once."""
    return bool(files) and all(isinstance(part[1][1], bytes) for part in files or ())


def _plain_name(name: str) -> str:
    """A file name fit for a multipart header: control and other invisible characters (a
    hot folder takes any name a file system allows) become "_"."""
    return "".join("_" if unicodedata.category(char)[0] == "C" else char for char in name)


def _content(upload: Upload, opened: contextlib.ExitStack) -> IO[bytes] | bytes:
    """A small file's bytes (read now: a missing file fails before anything is sent);
    a large file opened, to be streamed."""
    if isinstance(upload.content, bytes):
        return upload.content
    handle = opened.enter_context(upload.content.open("rb"))
    if os.fstat(handle.fileno()).st_size <= _IN_MEMORY:
        return handle.read()
    return handle
