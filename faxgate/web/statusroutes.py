"""The status pages' routes: the list at /, a page per job and per inbound fax, their
documents to download and, when a renderer is given, a picture of each first page.

Every one of them goes through the access check first (faxgate.web.guard). An id in
the URL is only looked up; an unknown or malformed one is a 404 page, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import quote

from aiohttp import web

from faxgate.domain.jobs import is_final
from faxgate.domain.retention import removed_words
from faxgate.web.detail import (
    JobReport,
    JobView,
    PageImage,
    read_fax_async,
    read_job_async,
    render_fax,
    render_job,
    valid_id,
)
from faxgate.web.guard import StatusAccess
from faxgate.web.markup import PAGE_HEADERS, printable
from faxgate.web.statuspage import BadQuery, StatusPage, error_page, parse_query

__all__ = ["add_status_routes"]

log = logging.getLogger("faxgate.web")

IMAGE_DEADLINE: Final = 30.0  # seconds a renderer may take for one picture

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Removed:
    """A document removed on purpose ([retention] documents): why, in words."""

    words: str


# A document the URL names: its file, type and name; Removed; or None (no such one).
Found = tuple[Path, str, str] | Removed | None

# A download is never shown inside our pages, whatever its type says it is.
_DOWNLOAD_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_status_routes(
    app: web.Application,
    page: StatusPage,
    *,
    access: StatusAccess | None = None,
    page_image: PageImage | None = None,
    job_report: JobReport | None = None,
) -> None:
    guard = access or StatusAccess()
    log.info("status pages guarded_by=%s page_pictures=%s", guard.mode, page_image is not None)
    routes = _StatusRoutes(page, guard, page_image, job_report)
    guarded = routes.guarded
    app.router.add_get("/", guarded(routes.index))
    app.router.add_get("/jobs/{job_id}", guarded(routes.job))
    app.router.add_get(r"/jobs/{job_id}/documents/{seq:\d{1,6}}", guarded(routes.job_document))
    app.router.add_get(
        r"/jobs/{job_id}/documents/{seq:\d{1,6}}/page1.png", guarded(routes.job_page_image)
    )
    app.router.add_get("/jobs/{job_id}/report.pdf", guarded(routes.job_report))
    app.router.add_get("/inbound/{fax_id}", guarded(routes.fax))
    app.router.add_get("/inbound/{fax_id}/document", guarded(routes.fax_document))
    app.router.add_get("/inbound/{fax_id}/page1.png", guarded(routes.fax_page_image))


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=dict(PAGE_HEADERS),
    )


def _attachment(name: str) -> str:
    # The name as the sender gave it, for the browser's "save as"; an ASCII stand-in too.
    name = printable(name)
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{plain or 'document'}\"; filename*=UTF-8''{quote(name)}"


class _StatusRoutes:
    def __init__(
        self,
        page: StatusPage,
        access: StatusAccess,
        page_image: PageImage | None,
        job_report: JobReport | None,
    ) -> None:
        self._page = page
        self._access = access
        self._page_image = page_image
        self._job_report = job_report

    def guarded(self, handler: Handler) -> Handler:
        async def guarded_handler(request: web.Request) -> web.StreamResponse:
            refusal = await self._access.refusal(request)
            if refusal is not None:
                return refusal
            return await handler(request)

        return guarded_handler

    def _not_found(self, what: str) -> web.Response:
        now = self._page.now()
        return _html(error_page(now, "Not found", what), status=404)

    async def index(self, request: web.Request) -> web.Response:
        try:
            query = parse_query(request.query)
        except BadQuery as error:
            return _html(error_page(self._page.now(), "Cannot filter so", str(error)), 400)
        return _html(await self._page.render(query))

    async def _job_view(self, request: web.Request) -> JobView | None:
        """The job the URL names, if there is one."""
        job_id = valid_id(request.match_info["job_id"])
        return None if job_id is None else await read_job_async(self._page.store, job_id)

    async def job(self, request: web.Request) -> web.Response:
        view = await self._job_view(request)
        if view is None:
            return self._not_found("There is no such job.")
        thumbnails = self._page_image is not None
        report = self._job_report is not None
        return _html(
            render_job(
                view,
                self._page.now(),
                thumbnails=thumbnails,
                report=report,
                per_number=self._page.calls_per_number(),
            )
        )

    async def job_report(self, request: web.Request) -> web.Response:
        view = await self._job_view(request)
        if view is None or self._job_report is None:
            return self._not_found("There is no such job.")
        if not is_final(view.job.state):
            return self._not_found("The fax has not ended yet: its report comes once it has.")
        documents = [kept.document for kept in view.documents]
        pdf = await self._job_report(view.job, documents, view.events)
        headers = {
            **_DOWNLOAD_HEADERS,
            "Content-Disposition": _attachment(f"fax-report-{view.job.id}.pdf"),
        }
        return web.Response(body=pdf, content_type="application/pdf", headers=headers)

    async def fax(self, request: web.Request) -> web.Response:
        fax_id = valid_id(request.match_info["fax_id"])
        view = None if fax_id is None else await read_fax_async(self._page.store, fax_id)
        if view is None:
            return self._not_found("There is no such inbound fax.")
        thumbnails = self._page_image is not None
        return _html(render_fax(view, self._page.now(), thumbnails=thumbnails))

    async def _job_file(self, request: web.Request) -> Found:
        """The spool file, type and name of the document the URL names, if still kept;
        when it was removed ([retention] documents), the words that say so."""
        job_id = valid_id(request.match_info["job_id"])
        if job_id is None:
            return None
        seq = int(request.match_info["seq"])
        documents = await asyncio.to_thread(self._page.store.documents, job_id)
        for doc in documents:
            if doc.seq == seq and doc.removed_at is not None:
                return Removed(removed_words(doc.removed_at, None))
            if doc.seq == seq and await asyncio.to_thread(doc.path.is_file):
                return doc.path, doc.content_type, doc.name
        return None

    async def _fax_file(self, request: web.Request) -> Found:
        fax_id = valid_id(request.match_info["fax_id"])
        if fax_id is None:
            return None
        fax = await asyncio.to_thread(self._page.store.get_inbound, fax_id)
        if fax is None or fax.document is None:
            return None
        if fax.removed_at is not None:
            return Removed(removed_words(fax.removed_at, None, subject="its document was"))
        doc = fax.document
        if not await asyncio.to_thread(doc.path.is_file):
            return None
        extension = ".pdf" if doc.content_type == "application/pdf" else ""
        return doc.path, doc.content_type, f"fax-{fax.id}{extension}"

    def _gone(self, removed: Removed) -> web.Response:
        """410: the document was there and was removed on purpose."""
        words = f"This fax's document is gone: {removed.words}."
        return _html(error_page(self._page.now(), "Removed", words), status=410)

    def _download(self, found: Found, missing: str) -> web.StreamResponse:
        if found is None:
            return self._not_found(missing)
        if isinstance(found, Removed):
            return self._gone(found)
        path, content_type, name = found
        headers = {
            **_DOWNLOAD_HEADERS,
            "Content-Type": content_type or "application/octet-stream",
            "Content-Disposition": _attachment(name),
        }
        return web.FileResponse(path, headers=headers)

    async def job_document(self, request: web.Request) -> web.StreamResponse:
        found = await self._job_file(request)
        return self._download(found, "There is no such document, or it is no longer kept.")

    async def fax_document(self, request: web.Request) -> web.StreamResponse:
        found = await self._fax_file(request)
        return self._download(found, "This fax has no document kept.")

    async def _image(self, found: Found) -> web.Response:
        if isinstance(found, Removed):
            return self._gone(found)
        if self._page_image is None or found is None:
            return self._not_found("There is no picture of this page.")
        path, content_type, _name = found
        try:
            png = await asyncio.wait_for(self._page_image(path, content_type), IMAGE_DEADLINE)
        except Exception as error:  # a renderer's trouble costs the picture, not the page
            log.warning("page picture not drawn error=%s", type(error).__name__)
            png = None
        if png is None:
            return self._not_found("This page could not be drawn.")
        return web.Response(body=png, content_type="image/png", headers=dict(_DOWNLOAD_HEADERS))

    async def job_page_image(self, request: web.Request) -> web.Response:
        return await self._image(await self._job_file(request))

    async def fax_page_image(self, request: web.Request) -> web.Response:
        return await self._image(await self._fax_file(request))
