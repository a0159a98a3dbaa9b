"""faxgate's HTTP server: the provider's callbacks (faxgate.web.callbacks), /healthz,
/metrics and the status page. The callback token is never logged: the access log shows
it as ***.

/healthz answers 200 or 503 with the checks of faxgate.web.health as JSON; / and the pages
under it are the read-only status pages (faxgate.web.statusroutes). Both read the store in
a thread, and so does /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from faxgate import metrics
from faxgate.sending.tracker import Tracker
from faxgate.web.callbacks import CallbackEndpoints, FetchDocument, InboundHandler
from faxgate.web.detail import JobReport, PageImage
from faxgate.web.guard import StatusAccess
from faxgate.web.health import Health
from faxgate.web.statuspage import StatusPage
from faxgate.web.statusroutes import add_status_routes

__all__ = ["HttpServer", "build_app", "start_http"]

log = logging.getLogger("faxgate.web")
access_log = logging.getLogger("faxgate.web.access")

_TOKEN_IN_PATH: Final = re.compile(r"^/callbacks/[^/]*")


def build_app(
    *,
    token: str,
    tracker: Tracker,
    max_body: int,
    inbound: InboundHandler | None = None,
    upload_dir: Path | None = None,
    health: Health | None = None,
    status_page: StatusPage | None = None,
    status_access: StatusAccess | None = None,
    page_image: PageImage | None = None,
    job_report: JobReport | None = None,
    event_key: str = "",
    fetch_document: FetchDocument | None = None,
) -> web.Application:
    """The application; `upload_dir` is where inbound documents wait while handled.

    Without `health`, /healthz has nothing to check and answers ok; without `status_page`,
    the status pages are not served. `status_access` guards them (open without it);
    `page_image` draws a document's first page for them (no pictures without it),
    `job_report` makes an ended job's confirmation report (no report link without it).
    """
    if not token:
        raise ValueError("the callback token is empty")
    if max_body < 1:
        raise ValueError("max_body must be positive")

    app = web.Application(client_max_size=max_body)
    callbacks = CallbackEndpoints(
        token, tracker, max_body, inbound, upload_dir, event_key, fetch_document
    )
    app.router.add_post("/callbacks/{token}/outbound", callbacks.outbound)
    app.router.add_post("/callbacks/{token}/events", callbacks.events)
    app.router.add_post("/callbacks/{token}/inbound", callbacks.inbound)
    app.router.add_get("/healthz", _HealthEndpoint(health).get)
    app.router.add_get("/metrics", _metrics)
    if status_page is not None:
        add_status_routes(
            app, status_page, access=status_access, page_image=page_image, job_report=job_report
        )
    return app


class _HealthEndpoint:
    def __init__(self, health: Health | None) -> None:
        self._health = health

    async def get(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "no-store"}
        if self._health is None:
            return web.json_response({"status": "ok"}, headers=headers)
        report = await self._health.check()
        status = 200 if report.healthy else 503
        return web.json_response(report.as_json(), status=status, headers=headers)


async def _metrics(request: web.Request) -> web.Response:
    # Some metrics are read from the store at scrape time: off the event loop.
    body = await asyncio.to_thread(generate_latest, metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ---------------------------------------------------------------------- serving


class _AccessLogger(AbstractAccessLogger):
    """One line per request at DEBUG, with the callback token masked."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        path = _TOKEN_IN_PATH.sub("/callbacks/***", request.path)
        self.logger.debug(
            "%s %s %s -> %d in %.0f ms",
            request.remote,
            request.method,
            path,
            response.status,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)


@dataclass(frozen=True)
class HttpServer:
    """A started server; `port` is the one actually bound (useful with port 0)."""

    runner: web.AppRunner
    host: str
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_http(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> HttpServer:
    runner = web.AppRunner(
        app,
        access_log_class=_AccessLogger,
        access_log=access_log,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    log.info("http listening host=%s port=%d", host, bound)
    return HttpServer(runner, host, bound)
