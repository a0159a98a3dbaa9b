"""The Dropbox Fax API v3 sandbox: the v3 routes and signed events over the shared simulation."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from faxgate.dropbox_fax.sandbox.app import build_app
from faxgate.dropbox_fax.sandbox.ratelimit import RateInspection
from faxgate.dropbox_fax.sandbox.shapes import API_PREFIX
from faxgate.dropbox_fax.sandbox.wire import DropboxFaxWire
from faxgate.sandbox.server import SandboxServer
from faxgate.sandbox.service import SandboxService
from faxgate.sandbox.settings import SandboxSettings
from faxgate.sandbox.wire import Wire


class DropboxFaxSandbox(SandboxServer):
    """A Dropbox Fax API v3 server for trials and tests; state kept in settings.state_dir.

    Auth is the settings' `api_key` with an empty password; events go to the account's
    callback URL (PUT /v3/account `callback_url`, or `set_callback_url`)."""

    api_prefix = API_PREFIX

    def __init__(self, settings: SandboxSettings) -> None:
        super().__init__(settings)
        self._wire = DropboxFaxWire(settings.api_key)
        self._rate = RateInspection(settings.rate_limit, settings.rate_window)

    async def start(self) -> None:
        await super().start()
        parts = urlsplit(self.base_url)
        self._wire.origin = f"{parts.scheme}://{parts.netloc}"

    def wire(self) -> Wire:
        return self._wire

    def build_app(self, settings: SandboxSettings, service: SandboxService) -> web.Application:
        return build_app(settings, service, lambda: self._wire.origin, self._rate)

    def rate(self) -> RateInspection:
        """What the rate limit saw: 429s answered, the most requests in one window
        (GET /_sandbox/rate)."""
        return self._rate

    def set_callback_url(self, url: str | None) -> None:
        """Where events go, as the provider's API settings page sets it."""
        self._state.service.update_account({"event_callback_url": url})
