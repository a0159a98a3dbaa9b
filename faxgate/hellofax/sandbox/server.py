"""The HelloFax v1 sandbox: the v1 routes and callbacks over the shared simulation."""

from __future__ import annotations

from aiohttp import web

from faxgate.hellofax.sandbox.app import build_app
from faxgate.hellofax.sandbox.shapes import API_PREFIX
from faxgate.hellofax.sandbox.wire import HelloFaxWire
from faxgate.sandbox.server import SandboxServer
from faxgate.sandbox.service import SandboxService
from faxgate.sandbox.settings import SandboxSettings
from faxgate.sandbox.wire import Wire


class Sandbox(SandboxServer):
    """A HelloFax-compatible server for trials and tests; state kept in settings.state_dir."""

    api_prefix = API_PREFIX

    def wire(self) -> Wire:
        return HelloFaxWire()

    def build_app(self, settings: SandboxSettings, service: SandboxService) -> web.Application:
        return build_app(settings, service)
