"""Who may see the status pages: everyone who reaches the server (it binds loopback by
default), or only who gives the password (HTTP Basic), or whoever a reverse proxy in front
vouches for with a header it sets. /healthz, /metrics and the provider's callbacks are
never behind it.

The password setting holds the password itself (best from the environment or a systemd
credential, as other secrets) or a scrypt hash of it, as `faxgate smtp hash-password`
prints it. Neither it nor what a browser sends is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from typing import Final

from aiohttp import web

from faxgate.domain.passwords import SCHEME, PasswordHash, parse_hash, verify_password

__all__ = ["REALM", "StatusAccess"]

_REMEMBERED: Final = 32  # good answers remembered, so scrypt runs once per browser
REALM: Final = "faxgate status"


class StatusAccess:
    """Decides whether a request may see a status page.

    Open when neither a password nor a trusted header is set. With both, either will do.
    """

    def __init__(self, *, user: str = "", password: str = "", trust_header: str = "") -> None:
        self._hash: PasswordHash | None = (
            parse_hash(password) if password.startswith(f"{SCHEME}$") else None
        )
        self._user = user
        self._password = password
        self._header = trust_header
        self._good: OrderedDict[bytes, None] = OrderedDict()

    @property
    def open(self) -> bool:
        return not self._password and not self._header

    @property
    def mode(self) -> str:
        """For the startup log: never the secret."""
        modes = [
            m for m, on in (("password", self._password), ("proxy header", self._header)) if on
        ]
        return " or ".join(modes) or "open"

    async def refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may go on; else the answer it gets."""
        if self.open:
            return None
        if self._header and request.headers.get(self._header, "").strip():
            return None
        if self._password:
            if await self._basic_ok(request.headers.get("Authorization", "")):
                return None
            return web.Response(
                status=401,
                text="This page needs the status page's user name and password.\n",
                headers={
                    "WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"',
                    "Cache-Control": "no-store",
                },
            )
        return web.Response(
            status=403,
            text="This page is shown only through the reverse proxy in front of faxgate.\n",
            headers={"Cache-Control": "no-store"},
        )

    async def _basic_ok(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return False
        key = hashlib.sha256(authorization.encode(errors="surrogateescape")).digest()
        if key in self._good:
            self._good.move_to_end(key)
            return True
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, colon, password = decoded.partition(":")
        if not colon:
            return False
        user_ok = hmac.compare_digest(user.encode(), self._user.encode())
        given = password.encode()
        if self._hash is not None:  # scrypt: some 50 ms, off the event loop
            password_ok = await asyncio.to_thread(verify_password, given, self._hash)
        else:
            password_ok = hmac.compare_digest(given, self._password.encode())
        if not (user_ok and password_ok):
            return False
        self._good[key] = None
        if len(self._good) > _REMEMBERED:
            self._good.popitem(last=False)
        return True
