"""/_sandbox/...: inspection and switches for tests and demos; a path the real API lacks.

Not protected by the account's credentials: the app answers these only on loopback
(`local_control_only`). The same for every face, but for how an injected fax is shown.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from faxgate.sandbox.faults import FaultInjector
from faxgate.sandbox.forms import MAX_FIELD_BYTES, RequestError, Upload, json_object, read_part
from faxgate.sandbox.limits import MAX_BYTES_PER_SEND
from faxgate.sandbox.records import TransmissionRecord
from faxgate.sandbox.service import SandboxService

PREFIX = "/_sandbox/"

Shown = Callable[[TransmissionRecord], dict[str, Any]]
Refusal = Callable[[str, int], web.Response]


def local_control_only(refuse: Refusal) -> Any:
    """A middleware: the control routes answer loopback clients only."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PREFIX) and not is_loopback(request.remote):
            return refuse("The sandbox control API is local only", 403)
        return await handler(request)

    return middleware


def injected_faults(
    faults: FaultInjector, api_prefix: str, is_send: Callable[[web.Request], bool], fail: Refusal
) -> Any:
    """A middleware: the API's requests meet the fault switches (errors, slow answers)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(api_prefix + "/"):
            return await handler(request)
        send = is_send(request)
        status = faults.error_status(is_send=send)
        if status is not None:
            return fail("Internal server error", status)
        response = await handler(request)
        delay = faults.answer_delay(is_send=send)
        if delay:
            await asyncio.sleep(delay)
        return response

    return middleware


def unavailable_page() -> web.Response:
    """What a load balancer in front of an API answers when it is down: HTML, not JSON."""
    return web.Response(
        status=503,
        content_type="text/html",
        text="<html><body><h1>503 Service Unavailable</h1></body></html>",
    )


def refusals(render: Callable[[RequestError], web.Response]) -> Any:
    """A middleware: refusals (and aiohttp's own, such as 405) rendered in the face's shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RequestError as refused:
            return render(refused)
        except web.HTTPException as problem:
            if problem.status < 400:
                raise
            allow = {k: v for k, v in problem.headers.items() if k == hdrs.ALLOW}
            return render(RequestError(problem.status, problem.reason, allow))

    return middleware


def control_url(base_url: str, endpoint: str) -> str:
    """The control endpoint beside an API base URL (http://host:port/v1 -> /_sandbox/...)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, PREFIX + endpoint, "", ""))


def is_loopback(remote: str | None) -> bool:
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def add_routes(app: web.Application, service: SandboxService, show: Shown) -> None:
    """The control routes; `show` renders an injected fax as the face's API would."""
    routes = _Control(service, show)
    app.router.add_get(PREFIX + "transmissions", routes.transmissions)
    app.router.add_get(PREFIX + "duplicates", routes.duplicates)
    app.router.add_get(PREFIX + "callbacks", routes.callbacks)
    app.router.add_get(PREFIX + "faults", routes.get_faults)
    app.router.add_post(PREFIX + "faults", routes.merge_faults)
    app.router.add_delete(PREFIX + "faults", routes.reset_faults)
    app.router.add_get(PREFIX + "account", routes.get_account)
    app.router.add_post(PREFIX + "account", routes.set_account)
    app.router.add_post(PREFIX + "inbound", routes.inbound)


class _Control:
    def __init__(self, service: SandboxService, show: Shown) -> None:
        self._service = service
        self._show = show

    async def transmissions(self, request: web.Request) -> web.Response:
        return web.json_response(
            [item.model_dump(mode="json", by_alias=True) for item in self._service.inspect()]
        )

    async def duplicates(self, request: web.Request) -> web.Response:
        return web.json_response(
            [item.model_dump(mode="json") for item in self._service.duplicates()]
        )

    async def callbacks(self, request: web.Request) -> web.Response:
        return web.json_response(
            [item.model_dump(mode="json") for item in self._service.callback_attempts()]
        )

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self._service.faults.settings.model_dump(mode="json"))

    async def merge_faults(self, request: web.Request) -> web.Response:
        changes = json_object(await request.text())
        try:
            merged = self._service.faults.merge(changes)
        except ValidationError as problem:
            raise RequestError(400, _validation_message(problem)) from None
        self._service.wake()
        return web.json_response(merged.model_dump(mode="json"))

    async def reset_faults(self, request: web.Request) -> web.Response:
        settings = self._service.faults.reset()
        self._service.wake()
        return web.json_response(settings.model_dump(mode="json"))

    async def get_account(self, request: web.Request) -> web.Response:
        account = self._service.account()
        return web.json_response(
            {"guid": account.guid, "confirmed": account.confirmed, "lines": self._service.lines()}
        )

    async def set_account(self, request: web.Request) -> web.Response:
        body = json_object(await request.text())
        confirmed = body.get("confirmed")
        if set(body) != {"confirmed"} or not isinstance(confirmed, bool):
            raise RequestError(400, 'Give {"confirmed": true} or {"confirmed": false}')
        self._service.set_confirmed(confirmed)
        return await self.get_account(request)

    async def inbound(self, request: web.Request) -> web.Response:
        """multipart/form-data: `to` (one of the account's lines), `from`, one file part."""
        if request.content_type != "multipart/form-data":
            raise RequestError(400, "Send multipart/form-data with to, from and a file")
        fields: dict[str, str] = {}
        upload: Upload | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise RequestError(400, "Nested multipart bodies are not supported")
            if part.filename is None:
                value = await read_part(part, MAX_FIELD_BYTES, f"Field {part.name!r} is too long")
                fields[part.name or ""] = value.decode()
            elif upload is None:
                content = await read_part(part, MAX_BYTES_PER_SEND, "The file is too large")
                upload = Upload(part.filename, content)
            else:
                raise RequestError(400, "Give exactly one file")
        if upload is None or not fields.get("to") or not fields.get("from"):
            raise RequestError(400, "Give to, from and a file")
        record = await self._service.inject_inbound(fields["to"], fields["from"], upload)
        return web.json_response(self._show(record))


def _validation_message(problem: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in problem.errors()
    )
