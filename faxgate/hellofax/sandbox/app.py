"""The HTTP face: the provider's v1 routes under /v1, the control routes under /_sandbox/."""

from __future__ import annotations

import re

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from faxgate.hellofax.sandbox import shapes
from faxgate.hellofax.sandbox.forms import account_changes, read_fields, read_send
from faxgate.sandbox import control
from faxgate.sandbox.forms import RequestError, basic_auth_matches, page_parameter
from faxgate.sandbox.limits import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from faxgate.sandbox.paging import Paging
from faxgate.sandbox.service import RateLimited, SandboxService, TransmissionNotFound
from faxgate.sandbox.settings import SandboxSettings

_SEND_PATH = re.compile(r"^/v1/Accounts/[^/]+/Transmissions/?$")
_REALM = 'Basic realm="HelloFax API"'


def build_app(settings: SandboxSettings, service: SandboxService) -> web.Application:
    api = _Api(service)

    @web.middleware
    async def basic_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(shapes.API_PREFIX + "/"):
            return await handler(request)
        if not _authorized(request, settings):
            return web.json_response(
                shapes.error("Unauthorized: wrong username or password", 401),
                status=401,
                headers={hdrs.WWW_AUTHENTICATE: _REALM},
            )
        if "guid" in request.match_info:
            service.check_account(request.match_info["guid"])
        return await handler(request)

    def refuse(message: str, status: int) -> web.Response:
        return web.json_response(shapes.error(message, status), status=status)

    app = web.Application(
        middlewares=[
            control.local_control_only(refuse),
            control.injected_faults(service.faults, shapes.API_PREFIX, _is_send, _fault_response),
            control.refusals(_refusal),
            basic_auth,
        ]
    )
    account = "/v1/Accounts/{guid}"
    app.router.add_get(account, api.get_account)
    app.router.add_post(account, api.update_account)
    app.router.add_put(account, api.update_account)
    app.router.add_get(account + "/FaxLines", api.list_lines)
    app.router.add_post(account + "/FaxLines", api.buy_line)
    app.router.add_delete(account + "/FaxLines/{number}", api.delete_line)
    app.router.add_get("/v1/AreaCodes", api.area_codes)
    app.router.add_post(account + "/Transmissions", api.send)
    app.router.add_get(account + "/Transmissions", api.list_transmissions)
    app.router.add_get(account + "/Transmissions/{transmission}", api.get_transmission)
    control.add_routes(app, service, shapes.one_transmission)
    return app


class _Api:
    def __init__(self, service: SandboxService) -> None:
        self._service = service

    async def get_account(self, request: web.Request) -> web.Response:
        return web.json_response(shapes.account(self._service.account()))

    async def update_account(self, request: web.Request) -> web.Response:
        record = self._service.update_account(account_changes(await read_fields(request)))
        return web.json_response(shapes.account(record))

    async def list_lines(self, request: web.Request) -> web.Response:
        return web.json_response(shapes.fax_lines(self._service.guid, self._service.lines()))

    async def buy_line(self, request: web.Request) -> web.Response:
        fields = await read_fields(request)
        number = self._service.buy_line(fields.getall("AreaCode", [""])[-1])
        return web.json_response(shapes.bought_fax_line(self._service.guid, number))

    async def delete_line(self, request: web.Request) -> web.Response:
        self._service.delete_line(request.match_info["number"])
        return web.json_response(shapes.deleted())

    async def area_codes(self, request: web.Request) -> web.Response:
        codes = self._service.area_codes(request.query.get("StateCode"))
        return web.json_response(shapes.area_codes(codes))

    async def send(self, request: web.Request) -> web.Response:
        records = await self._service.submit(await read_send(request))
        if self._service.faults.take_drop_after_upload() and request.transport is not None:
            # The ambiguous case: the fax is accepted and stored, the answer never arrives.
            request.transport.abort()
        return web.json_response(shapes.send_answer(records))

    async def get_transmission(self, request: web.Request) -> web.Response:
        record = self._service.transmission(request.match_info["transmission"])
        return web.json_response(shapes.one_transmission(record))

    async def list_transmissions(self, request: web.Request) -> web.Response:
        page = page_parameter(request.query.get("Page"), "Page", 0, 0)
        size = page_parameter(request.query.get("PageSize"), "PageSize", DEFAULT_PAGE_SIZE, 1)
        paging = Paging(page, min(size, MAX_PAGE_SIZE), self._service.count())
        records = self._service.newest(paging.start, paging.page_size)
        return web.json_response(shapes.transmission_list(self._service.guid, records, paging))


def _authorized(request: web.Request, settings: SandboxSettings) -> bool:
    return basic_auth_matches(request, settings.username, settings.password)


def _refusal(refused: RequestError) -> web.Response:
    if isinstance(refused, RateLimited):
        return web.Response(status=429, text=shapes.RATE_LIMIT_MESSAGE)
    if isinstance(refused, TransmissionNotFound):
        return web.json_response(shapes.not_found(), status=404)
    body = shapes.error(refused.message, refused.status)
    return web.json_response(body, status=refused.status, headers=refused.headers)


def _is_send(request: web.Request) -> bool:
    return request.method == hdrs.METH_POST and bool(_SEND_PATH.match(request.path))


def _fault_response(message: str, status: int) -> web.Response:
    if status == 503:
        return control.unavailable_page()
    return web.json_response(shapes.error(message, status), status=status)
