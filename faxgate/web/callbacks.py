"""Where the provider reaches faxgate: the secret token, the callback URLs (v1's two, v3's
one for its events), and the endpoints that take the callbacks.

The callback URLs hold a secret token in their path, so a stranger cannot post outcomes:
it is compared in constant time and never logged. The provider retries a callback until it
gets a 200, for hours, so a 200 only goes out once the report is recorded (or is surely
useless: an unknown transmission, a stale status); anything we could not record gets a 503
and comes again. A body that is not a callback gets 400 (nothing recorded), a wrong token
404, another method 405, a body over `max_callback_size` 413: it is read only until it
passes the limit, and only the json part (a few kilobytes, at most 1 MiB) is ever held in
memory; documents go to disk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import secrets
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Literal, Protocol
from urllib.parse import parse_qs

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from faxgate import metrics
from faxgate.domain.provider import FaxReport, report_to_body
from faxgate.dropbox_fax.events import (
    EVENT_ANSWER,
    EVENT_ANSWER_CONTENT_TYPE,
    Callback,
    Verdict,
    verify_event,
)
from faxgate.durable import write_bytes
from faxgate.hellofax.models import Transmission
from faxgate.sending.tracker import Tracker
from faxgate.settings import Settings

log = logging.getLogger("faxgate.web")

TOKEN_BYTES = 24


def callback_token(settings: Settings) -> str:
    """The configured token, else the one kept in the state directory, made on first use."""
    known = known_callback_token(settings)
    if known is not None:
        return known
    token = secrets.token_urlsafe(TOKEN_BYTES)
    _write_private(settings.callback_token_path, token)
    return token


def known_callback_token(settings: Settings) -> str | None:
    """The configured token, else the one kept in the state directory; None before the
    first start made one (nothing is written)."""
    configured = settings.http.callback_token.get_secret_value()
    if configured:
        return configured
    try:
        return settings.callback_token_path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str) -> None:
    """Create the file readable by its owner only, durably, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, (text + "\n").encode("ascii"), mode=0o600)


def public_base_url(settings: Settings, bound_port: int | None = None) -> str:
    """How the provider reaches faxgate's HTTP server (`bound_port`: the port actually
    bound, when the settings ask for any free one)."""
    if settings.http.public_url:
        return settings.http.public_url
    host, port = settings.http.listen
    port = bound_port or port
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard is reachable on loopback
        host = "127.0.0.1"
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


def callback_urls(settings: Settings, token: str, bound_port: int | None = None) -> tuple[str, str]:
    """(inbound URL, outbound URL) to register with the provider."""
    base = f"{public_base_url(settings, bound_port)}/callbacks/{token}"
    return f"{base}/inbound", f"{base}/outbound"


def event_callback_url(settings: Settings, token: str, bound_port: int | None = None) -> str:
    """The Dropbox Fax API v3's one callback URL (its API settings page takes it)."""
    return f"{public_base_url(settings, bound_port)}/callbacks/{token}/events"


# ---------------------------------------------------------------------------- endpoints

Direction = Literal["outbound", "inbound", "event"]
# Fetches an inbound fax's document by its id (v3 announces a fax without its file).
FetchDocument = Callable[[str], Awaitable[bytes]]

JSON_PART: Final = "json"  # the provider's part (or form field) holding the transmission
RECEIVED: Final = "fax_received"  # the v3 event type of an inbound fax
_CHUNK: Final = 64 * 1024
_MAX_PARTS: Final = 32  # a callback has a json part and a document or two
_MAX_FIELD: Final = 1024 * 1024  # bytes of a form field (the json part) held in memory
_MULTIPART: Final = "multipart/form-data"
_URLENCODED: Final = "application/x-www-form-urlencoded"


class InboundHandler(Protocol):
    """Takes an inbound fax: the transmission object and the files that came with it.

    `files` are (the name the provider gave, a temporary path); the paths are removed
    when the call returns, so move or copy what is kept. Raising makes the callback
    answer 503, and the provider sends it again later.
    """

    async def __call__(self, transaction: dict[str, Any], files: list[tuple[str, Path]]) -> None:
        """Store the fax durably before returning."""


class _Refused(Exception):
    """The callback cannot be taken; the status and short reason go back to the sender."""

    def __init__(self, status: int, reason: str, result: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.result = result  # the metric's label


def _too_large(max_body: int) -> _Refused:
    return _Refused(413, f"the body is larger than {max_body} bytes", "too_large")


@dataclass
class _Form:
    fields: dict[str, str]
    files: list[tuple[str, Path]]


class _Budget:
    """Bytes a request may still send; counted as they are read, not as they are announced."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise _too_large(self.limit)


class CallbackEndpoints:
    """The two callback routes: outbound reports to the tracker, inbound faxes to the
    receiver."""

    def __init__(
        self,
        token: str,
        tracker: Tracker,
        max_body: int,
        inbound: InboundHandler | None,
        upload_dir: Path | None,
        event_key: str = "",
        fetch_document: FetchDocument | None = None,
    ) -> None:
        self._token = token.encode()
        self._tracker = tracker
        self._max_body = max_body
        self._inbound = inbound
        self._upload_dir = upload_dir
        self._event_key = event_key  # the v3 API key its events are signed with
        self._fetch_document = fetch_document

    async def outbound(self, request: web.Request) -> web.Response:
        return await self._handle(request, "outbound", self._take_outbound)

    async def events(self, request: web.Request) -> web.Response:
        """The Dropbox Fax API v3's events: taken only when signed with the API key, and
        answered with the exact words it waits for (else it tries again for days)."""
        answer = await self._handle(request, "event", self._take_event)
        if answer.status != 200:
            return answer
        return web.Response(text=EVENT_ANSWER, content_type=EVENT_ANSWER_CONTENT_TYPE)

    async def inbound(self, request: web.Request) -> web.Response:
        return await self._handle(request, "inbound", self._take_inbound)

    async def _handle(
        self,
        request: web.Request,
        direction: Direction,
        take: Callable[[web.Request], Awaitable[str]],
    ) -> web.Response:
        presented = request.match_info["token"].encode()
        if not hmac.compare_digest(presented, self._token):
            metrics.callbacks.labels(direction=direction, result="bad_token").inc()
            log.warning(
                "callback refused: wrong token direction=%s remote=%s", direction, request.remote
            )
            raise web.HTTPNotFound()
        try:
            result = await take(request)
        except _Refused as refused:
            metrics.callbacks.labels(direction=direction, result=refused.result).inc()
            log.log(
                logging.INFO if refused.result == "not_accepted" else logging.WARNING,
                "callback refused direction=%s status=%d why=%s",
                direction,
                refused.status,
                refused.reason,
            )
            return web.Response(status=refused.status, text=refused.reason)
        metrics.callbacks.labels(direction=direction, result=result).inc()
        return web.Response(text="ok")

    def _check_announced_size(self, request: web.Request) -> None:
        length = request.content_length
        if length is not None and length > self._max_body:
            raise _too_large(self._max_body)

    async def _take_outbound(self, request: web.Request) -> str:
        self._check_announced_size(request)
        form = await _read_form(request, _Budget(self._max_body), None)
        return await self._observe(_transmission(form.fields).report())

    async def _take_event(self, request: web.Request) -> str:
        self._check_announced_size(request)
        # Files are kept only for a fax received, which may come with its document.
        with tempfile.TemporaryDirectory(prefix="faxgate-inbound-", dir=self._upload_dir) as tmp:
            form = await self._read_with_files(request, Path(tmp))
            return await self._take_event_form(form, Path(tmp))

    async def _read_with_files(self, request: web.Request, tmp: Path) -> _Form:
        try:
            return await _read_form(request, _Budget(self._max_body), tmp)
        except OSError as exc:  # a full disk while the upload is saved: the provider retries
            log.warning("callback not saved error=%s", exc.strerror)
            raise _Refused(503, "the fax could not be stored; try again", "error") from None

    async def _take_event_form(self, form: _Form, tmp: Path) -> str:
        text = form.fields.get(JSON_PART)
        if text is None:
            raise _Refused(400, "no json part", "bad_request")
        try:
            callback = Callback.from_api(text)
        except (ValueError, RecursionError):
            raise _Refused(400, "the json part is not a v3 event", "bad_request") from None
        verdict = verify_event(self._event_key, callback.event)
        if verdict is not Verdict.VERIFIED:
            # Said without the body: a forged event may carry anything.
            raise _Refused(401, f"the event's hash is not the API key's ({verdict})", "bad_hash")
        event = callback.event
        if not event.is_fax_event:
            log.info("v3 event answered type=%s", event.event_type)
            return "ignored"
        if event.event_type.strip().lower() == RECEIVED:
            return await self._take_v3_inbound(callback, form.files, tmp)
        reports = callback.fax_reports()
        if not reports:
            why = callback.fax_problem or "no fax id or status in it"
            log.warning("v3 event with nothing to apply type=%s why=%s", event.event_type, why)
            return "unreadable"
        results = [await self._observe(report) for report in reports]
        return "accepted" if "accepted" in results else "unknown"

    async def _take_v3_inbound(
        self, callback: Callback, files: list[tuple[str, Path]], tmp: Path
    ) -> str:
        """A fax received: its document as a file part of the event if one came, else
        fetched by its id; then stored as v1's inbound faxes are. Anything that fails
        answers 503: the provider keeps the fax and tells us again."""
        handler, fetch = self._inbound, self._fetch_document
        if handler is None or (fetch is None and not files):
            raise _Refused(503, "inbound faxes are not accepted yet", "not_accepted")
        reports = callback.fax_reports()
        if not reports:
            log.warning("v3 inbound event without a fax id why=%s", callback.fax_problem)
            return "unreadable"
        report = reports[0]
        try:
            if not files and fetch is not None:
                path = tmp / "fetched"
                await asyncio.to_thread(path.write_bytes, await fetch(report.guid))
                files = [(f"{report.guid}.pdf", path)]
            await handler(_as_v1_inbound(report), files)
        except Exception as exc:
            log.warning("v3 inbound fax not stored guid=%s error=%r", report.guid, exc)
            raise _Refused(503, "the fax could not be stored; try again", "error") from None
        log.info("inbound fax taken guid=%s from=%s", report.guid, report.from_)
        return "accepted"

    async def _observe(self, report: FaxReport) -> str:
        try:
            job = await self._tracker.observe(report, source="callback")
        except Exception:
            log.exception("callback not recorded guid=%s", report.guid)
            raise _Refused(503, "the report could not be recorded; try again", "error") from None
        if job is None:
            return "unknown"  # logged by the tracker; acknowledged so it is not sent again
        return "accepted"

    async def _take_inbound(self, request: web.Request) -> str:
        handler = self._inbound
        if handler is None:
            # A 503 keeps the fax at the provider, which sends it again later.
            raise _Refused(503, "inbound faxes are not accepted yet", "not_accepted")
        self._check_announced_size(request)
        with tempfile.TemporaryDirectory(prefix="faxgate-inbound-", dir=self._upload_dir) as tmp:
            form = await self._read_with_files(request, Path(tmp))
            tx = _transmission(form.fields)
            transaction = _transaction_object(form.fields[JSON_PART])
            try:
                await handler(transaction, form.files)
            except Exception:
                log.exception("inbound fax not stored guid=%s", tx.guid)
                raise _Refused(503, "the fax could not be stored; try again", "error") from None
        log.info("inbound fax taken guid=%s from=%s files=%d", tx.guid, tx.from_, len(form.files))
        return "accepted"


# ---------------------------------------------------------------------- reading bodies


async def _read_form(request: web.Request, budget: _Budget, file_dir: Path | None) -> _Form:
    """The fields (and, when `file_dir` is given, the files) of a callback body."""
    if request.content_type == _URLENCODED:
        body = bytearray()
        async for chunk in request.content.iter_chunked(_CHUNK):
            budget.take(len(chunk))
            body += chunk
            _check_field_size(len(body))
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _Refused(400, "the form is not UTF-8", "bad_request") from None
        return _Form({name: values[0] for name, values in parsed.items()}, [])
    if request.content_type != _MULTIPART:
        raise _Refused(400, f"expected {_MULTIPART} with a json part", "bad_request")

    form = _Form({}, [])
    try:
        reader = await request.multipart()
        for _ in range(_MAX_PARTS):
            part = await reader.next()
            if part is None:
                return form
            if not isinstance(part, BodyPartReader):
                raise _Refused(400, "nested multipart bodies are not accepted", "bad_request")
            if part.filename is None:
                content = await _read_part(part, budget, None)
                try:
                    form.fields[part.name or ""] = content.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Refused(400, f"part {part.name!r} is not UTF-8", "bad_request") from None
            elif file_dir is None:
                await _read_part(part, budget, None, keep=False)  # not wanted, but counted
            else:
                path = file_dir / f"part-{len(form.files)}"
                with path.open("wb") as sink:
                    await _read_part(part, budget, sink)
                form.files.append((part.filename, path))
    except (ValueError, HttpProcessingError) as problem:  # aiohttp's words for a bad body
        why = getattr(problem, "message", None) or problem
        raise _Refused(400, f"the multipart body is malformed: {why}", "bad_request") from None
    raise _Refused(400, f"more than {_MAX_PARTS} parts", "bad_request")


async def _read_part(
    part: BodyPartReader, budget: _Budget, sink: IO[bytes] | None, *, keep: bool = True
) -> bytes:
    """Read a part to its end, within the budget: into `sink` if given, else returned
    (up to _MAX_FIELD bytes) when `keep`, else dropped."""
    kept = bytearray()
    while chunk := await part.read_chunk(_CHUNK):
        budget.take(len(chunk))
        if sink is not None:
            await asyncio.to_thread(sink.write, chunk)
        elif keep:
            kept += chunk
            _check_field_size(len(kept))
    return bytes(kept)


def _check_field_size(size: int) -> None:
    if size > _MAX_FIELD:
        raise _Refused(413, f"a form field is larger than {_MAX_FIELD} bytes", "too_large")


def _transaction_object(text: str) -> dict[str, Any]:
    """The transmission object itself, out of its {"Transaction": ...} wrapper."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested thousands deep
        raise _Refused(400, "the json part is not valid JSON", "bad_request") from None
    if isinstance(data, dict):
        for key in ("Transaction", "Transmission"):
            inner = data.get(key)
            if isinstance(inner, dict):
                return inner
        return data
    raise _Refused(400, "the json part is not a JSON object", "bad_request")


def _as_v1_inbound(report: FaxReport) -> dict[str, Any]:
    """A v3 fax received, in the shape the inbound receiver reads (v1's transmission)."""
    body = report_to_body(dataclasses.replace(report, is_inbound=True))
    return body | {"StatusCode": "S"}


def _transmission(fields: dict[str, str]) -> Transmission:
    text = fields.get(JSON_PART)
    if text is None:
        raise _Refused(400, "no json part", "bad_request")
    data = _transaction_object(text)
    try:
        return Transmission.from_api(data)
    except ValidationError as problem:
        names = sorted(
            {".".join(str(p) for p in error["loc"]) or "(object)" for error in problem.errors()}
        )
        raise _Refused(
            400, f"the transmission is missing or has invalid {', '.join(names)}", "bad_request"
        ) from None


# ---------------------------------------------------------------------- health and metrics
