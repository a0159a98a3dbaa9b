"""The HTTP face: the Dropbox Fax API v3's routes under /v3, the control routes under /_sandbox/.

Every /v3 request needs Basic auth with the API key and an empty password, counts against
the account's rate limit, and gets the limit's headers; refusals come in v3's error shape.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from faxgate.dropbox_fax.sandbox import shapes
from faxgate.dropbox_fax.sandbox.forms import fetch_files, read_fields, read_send, text
from faxgate.dropbox_fax.sandbox.ratelimit import RateInspection, Window
from faxgate.hellofax.sandbox_defaults import DEFAULT_USERNAME
from faxgate.sandbox import areacodes, control
from faxgate.sandbox.forms import (
    RequestError,
    basic_auth_matches,
    callback_url,
    normalize_number,
    page_parameter,
)
from faxgate.sandbox.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from faxgate.sandbox.paging import Paging
from faxgate.sandbox.records import TransmissionRecord
from faxgate.sandbox.service import SandboxService
from faxgate.sandbox.settings import SandboxSettings

ACCOUNT_EMAIL = DEFAULT_USERNAME  # the sandbox account's address, as v1 logs in with it
_REALM = 'Basic realm="Dropbox Sign API"'
_SEND_PATH = shapes.API_PREFIX + "/fax/send"


def build_app(
    settings: SandboxSettings,
    service: SandboxService,
    origin: Callable[[], str],
    rate: RateInspection | None = None,
) -> web.Application:
    """The v3 routes; `origin` (scheme://host:port) makes the `files_url` of a fax shown
    outside a request (an injected inbound fax); `rate` is kept up to date with what the
    rate limit saw."""
    now = time.time
    window = Window(settings.rate_limit, settings.rate_window, now)
    test_mode = Window(settings.test_mode_rate_limit, settings.rate_window, now)
    api = _Api(service, test_mode)
    seen = rate or RateInspection(settings.rate_limit, settings.rate_window)

    def inspected() -> RateInspection:
        seen.peak, seen.test_mode_peak = window.peak, test_mode.peak
        return seen

    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(shapes.API_PREFIX + "/"):
            return await handler(request)
        if not basic_auth_matches(request, settings.api_key, ""):
            return _refusal(
                "Unauthorized user. No credentials supplied.",
                401,
                {hdrs.WWW_AUTHENTICATE: _REALM},
            )
        if not window.take():
            seen.refused += 1
            inspected()
            return _refusal("Too many requests.", 429, window.headers())
        response = await handler(request)
        if response.status == 429:
            seen.refused += 1
        inspected()
        for name, value in window.headers().items():
            response.headers.setdefault(name, value)  # a test-mode send shows its own
        return response

    async def rate_seen(request: web.Request) -> web.Response:
        return web.json_response(dataclasses.asdict(inspected()))

    app = web.Application(
        middlewares=[
            control.local_control_only(_refusal),
            control.injected_faults(service.faults, shapes.API_PREFIX, _is_send, _fault_response),
            gate,
            control.refusals(_render),
        ]
    )
    v3 = shapes.API_PREFIX
    app.router.add_get(v3 + "/account", api.get_account)
    app.router.add_put(v3 + "/account", api.update_account)
    app.router.add_post(v3 + "/account", api.update_account)
    app.router.add_post(v3 + "/fax/send", api.send)
    app.router.add_get(v3 + "/fax/list", api.list_faxes)
    app.router.add_get(v3 + "/fax/files/{fax_id}", api.files)
    app.router.add_get(v3 + "/fax/{fax_id}", api.get_fax)
    app.router.add_delete(v3 + "/fax/{fax_id}", api.delete_fax)
    app.router.add_get(v3 + "/fax_line/area_codes", api.area_codes)
    app.router.add_post(v3 + "/fax_line/create", api.create_line)
    app.router.add_get(v3 + "/fax_line/list", api.list_lines)
    app.router.add_get(v3 + "/fax_line", api.get_line)
    app.router.add_delete(v3 + "/fax_line", api.delete_line)
    app.router.add_put(v3 + "/fax_line/add_user", api.add_user)
    app.router.add_put(v3 + "/fax_line/remove_user", api.remove_user)
    control.add_routes(app, service, lambda record: shapes.fax_answer(record, origin()))
    app.router.add_get("/_sandbox/rate", rate_seen)
    return app


class _Api:
    def __init__(self, service: SandboxService, test_mode: Window) -> None:
        self._service = service
        self._test_mode = test_mode

    # Account ---------------------------------------------------------------------------

    async def get_account(self, request: web.Request) -> web.Response:
        return web.json_response(shapes.account(self._service.account(), ACCOUNT_EMAIL))

    async def update_account(self, request: web.Request) -> web.Response:
        fields = await read_fields(request)
        if "callback_url" in fields:
            url = callback_url(text(fields, "callback_url") or "")
            self._service.update_account({"event_callback_url": url})
        return await self.get_account(request)

    # Faxes -----------------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        send, urls = await read_send(request)
        if send.test_mode and not self._test_mode.take():
            raise RequestError(429, "Too many requests in test mode.", self._test_mode.headers())
        if urls:
            send = dataclasses.replace(send, files=await fetch_files(urls))
        (record,) = await self._service.submit(send)
        if self._service.faults.take_drop_after_upload() and request.transport is not None:
            # The ambiguous case: the fax is accepted and stored, the answer never arrives.
            request.transport.abort()
        headers = self._test_mode.headers() if send.test_mode else None
        return web.json_response(shapes.fax_answer(record, _origin(request)), headers=headers)

    async def get_fax(self, request: web.Request) -> web.Response:
        record = self._fax(request.match_info["fax_id"])
        return web.json_response(shapes.fax_answer(record, _origin(request)))

    async def list_faxes(self, request: web.Request) -> web.Response:
        paging = _paging(request, self._service.count())
        records = self._service.newest(paging.start, paging.page_size)
        return web.json_response(shapes.fax_list(records, paging, _origin(request)))

    async def files(self, request: web.Request) -> web.Response:
        record = self._fax(request.match_info["fax_id"])
        if not all(file.readable for file in record.files):
            raise RequestError(404, "The fax's files could not be processed.")
        document = await self._service.document(record)
        return web.Response(body=document, content_type="application/pdf")

    async def delete_fax(self, request: web.Request) -> web.Response:
        self._service.delete(self._fax(request.match_info["fax_id"]))
        return web.Response(status=204)

    def _fax(self, fax_id: str) -> TransmissionRecord:
        record = self._service.any_transmission(fax_id)
        if record is not None and record.deleted_at is not None:
            raise RequestError(410, "This resource has been deleted.")
        if record is None or record.removed_at is not None:
            raise RequestError(404, "Not found.")
        return record

    # Fax lines -------------------------------------------------------------------------

    async def area_codes(self, request: web.Request) -> web.Response:
        country = (request.query.get("country") or "").strip().upper()
        if country not in ("US", "CA", "UK"):
            raise RequestError(400, "country is required: US, CA or UK")
        state = request.query.get("state")
        if country != "US":
            return web.json_response({"area_codes": []})  # the sandbox sells US numbers only
        states = [state] if state else list(areacodes.AREA_CODES_BY_STATE)
        codes = {code for each in states for code in self._service.area_codes(each)}
        return web.json_response({"area_codes": sorted(codes)})

    async def create_line(self, request: web.Request) -> web.Response:
        fields = await read_fields(request)
        country = (text(fields, "country") or "").upper()
        if country not in ("US", "CA", "UK"):
            raise RequestError(400, "country is required: US, CA or UK")
        if country != "US":
            raise RequestError(400, f"No fax numbers are available in {country}")
        number = self._service.buy_line(text(fields, "area_code"))
        user = text(fields, "account_id")
        if user and user != self._service.guid:
            self._service.set_line_user(number, user, present=True)
        return self._line(number)

    async def get_line(self, request: web.Request) -> web.Response:
        return self._line(self._number(request.query.get("number")))

    async def list_lines(self, request: web.Request) -> web.Response:
        lines = self._service.lines()
        paging = _paging(request, len(lines))
        page = lines[paging.start : paging.start + paging.page_size]
        return web.json_response(
            {
                "fax_lines": [self._line_shape(number) for number in page],
                "list_info": shapes.list_info(paging),
                "warnings": [],
            }
        )

    async def delete_line(self, request: web.Request) -> web.Response:
        fields = await read_fields(request)
        self._service.delete_line(self._number(text(fields, "number")))
        return web.json_response({})

    async def add_user(self, request: web.Request) -> web.Response:
        return await self._set_user(request, present=True)

    async def remove_user(self, request: web.Request) -> web.Response:
        return await self._set_user(request, present=False)

    async def _set_user(self, request: web.Request, *, present: bool) -> web.Response:
        fields = await read_fields(request)
        number = self._number(text(fields, "number"))
        user = text(fields, "account_id") or text(fields, "email_address")
        if user is None:
            raise RequestError(400, "Give account_id or email_address")
        self._service.set_line_user(number, user.lower() if "@" in user else user, present=present)
        return self._line(number)

    def _number(self, raw: str | None) -> str:
        number = normalize_number(raw or "")
        if number is None:
            raise RequestError(400, "number is required: the fax line's number, in digits")
        return number

    def _line(self, number: str) -> web.Response:
        return web.json_response({"fax_line": self._line_shape(number), "warnings": []})

    def _line_shape(self, number: str) -> dict[str, Any]:
        return shapes.fax_line(
            number,
            self._service.line_bought_at(number),
            self._service.account(),
            ACCOUNT_EMAIL,
            self._service.line_users(number),
        )


def _paging(request: web.Request, total: int) -> Paging:
    page = page_parameter(request.query.get("page"), "page", 1, 1)
    size = page_parameter(request.query.get("page_size"), "page_size", DEFAULT_PAGE_SIZE, 1)
    if size > MAX_PAGE_SIZE:
        raise RequestError(400, f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    return Paging(page, size, total, first=1)


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _is_send(request: web.Request) -> bool:
    return request.method == hdrs.METH_POST and request.path.rstrip("/") == _SEND_PATH


def _refusal(message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(shapes.error(message, status), status=status, headers=headers)


def _render(refused: RequestError) -> web.Response:
    return _refusal(refused.message, refused.status, refused.headers)


def _fault_response(message: str, status: int) -> web.Response:
    return control.unavailable_page() if status == 503 else _refusal(message, status)
