"""The provider the settings ask for, behind the seam (faxgate.domain.provider): HelloFax
v1 or the Dropbox Fax API v3, the real one or the sandbox's face of it.

Moving from v1 to v3 is a change of settings (`[provider] kind`, or `[sandbox] api`):
everything above the seam reads both alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faxgate.domain.provider import FaxProvider
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.hellofax.provider import HelloFaxProvider, open_client
from faxgate.settings import Settings

__all__ = ["document_fetcher", "open_provider"]


def open_provider(
    settings: Settings,
    base_url: str | None = None,
    on_request: Callable[[str, int | str], None] | None = None,
) -> FaxProvider:
    """`base_url` overrides the settings' (the built-in sandbox knows its bound port)."""
    if settings.provider_api == "dropbox_fax":
        # A sandbox counts its rate over its own window; the real provider over a minute.
        sandbox = settings.provider.kind == "sandbox"
        return DropboxFaxClient(
            settings.provider_api_key(),
            base_url or settings.provider_base_url(),
            test_mode=settings.provider.test_mode,
            removes_sent=settings.provider_removes_sent,
            timeout=settings.provider.timeout,
            rate_window=settings.sandbox.rate_window.total_seconds() if sandbox else None,
            on_request=on_request,
        )
    client = open_client(settings, base_url, on_request)
    return HelloFaxProvider(client, removes_sent=settings.provider_removes_sent)


def document_fetcher(provider: FaxProvider) -> Callable[[str], Awaitable[bytes]] | None:
    """How to fetch an inbound fax's document by its id: v3 announces a fax received
    without its file; v1's callback carries it (None)."""
    return provider.download if isinstance(provider, DropboxFaxClient) else None
