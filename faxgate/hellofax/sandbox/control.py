"""/_sandbox/...: inspection and switches for tests and demos; a path the real API lacks.

Not protected by the account's credentials: the app answers these only on loopback.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web
from pydantic import ValidationError

from faxgate.hellofax.sandbox import shapes
from faxgate.sandbox.faults import FaultInjector
from faxgate.sandbox.forms import MAX_FIELD_BYTES, RequestError, Upload, read_part
from faxgate.sandbox.limits import MAX_BYTES_PER_SEND
from faxgate.sandbox.service import SandboxService

PREFIX = "/_sandbox/"


def add_routes(app: web.Application, service: SandboxService, faults: FaultInjector) -> None:
    routes = _Control(service, faults)
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
    def __init__(self, service: SandboxService, faults: FaultInjector) -> None:
        self._service = service
        self._faults = faults

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
        return web.json_response(self._faults.settings.model_dump(mode="json"))

    async def merge_faults(self, request: web.Request) -> web.Response:
        changes = await _json_object(request)
        try:
            merged = self._faults.merge(changes)
        except ValidationError as problem:
            raise RequestError(400, _validation_message(problem)) from None
        self._service.wake()
        return web.json_response(merged.model_dump(mode="json"))

    async def reset_faults(self, request: web.Request) -> web.Response:
        settings = self._faults.reset()
        self._service.wake()
        return web.json_response(settings.model_dump(mode="json"))

    async def get_account(self, request: web.Request) -> web.Response:
        account = self._service.account()
        return web.json_response(
            {"guid": account.guid, "confirmed": account.confirmed, "lines": self._service.lines()}
        )

    async def set_account(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
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
        return web.json_response(shapes.one_transmission(record))


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text())
    except ValueError:
        raise RequestError(400, "Send a JSON object") from None
    if not isinstance(body, dict):
        raise RequestError(400, "Send a JSON object")
    return body


def _validation_message(problem: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in problem.errors()
    )
