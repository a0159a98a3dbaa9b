"""Where the provider reaches faxgate: the secret token and the two callback URLs."""

from __future__ import annotations

import secrets
from pathlib import Path

from faxgate.durable import write_bytes
from faxgate.settings import Settings

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
