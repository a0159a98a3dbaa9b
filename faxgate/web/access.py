"""Who may see the status pages: everyone who reaches the server (it binds loopback by
default), or only who gives the password (HTTP Basic), or whoever a reverse proxy in front
vouches for with a header it sets. /healthz, /metrics and the provider's callbacks are
never behind it.

The password setting holds the password itself (best from the environment or a systemd
credential, as other secrets) or a scrypt hash of it, made by
`python -m faxgate.web.access`. Neither it nor what a browser sends is ever logged.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import getpass
import hashlib
import hmac
import ipaddress
import secrets
import sys
from collections import OrderedDict
from typing import Final

from aiohttp import web

__all__ = ["StatusAccess", "hash_password", "is_loopback", "verify_password"]

_SCHEME: Final = "scrypt"
# scrypt's cost: about 50 ms and 16 MiB a check; a good answer is remembered, so a
# browser asking for every page and image pays it once.
_N: Final = 2**14
_R: Final = 8
_P: Final = 1
_REMEMBERED: Final = 32
REALM: Final = "faxgate status"


def is_loopback(host: str) -> bool:
    """Whether a listen host reaches only this machine; a name other than localhost is
    taken as reaching further."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """ "scrypt$N$r$p$salt$hash", to put in the settings instead of the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"{_SCHEME}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def is_hash(setting: str) -> bool:
    return setting.startswith(f"{_SCHEME}$")


def check_hash(setting: str) -> None:
    """ValueError (naming no part of it) when a setting that looks like a hash is not one."""
    parts = setting.split("$")
    try:
        if len(parts) != 6:
            raise ValueError
        n, r, p = (int(x) for x in parts[1:4])
        if n < 2 or n & (n - 1) or n > 2**20 or not 1 <= r <= 32 or not 1 <= p <= 16:
            raise ValueError
        if len(_unb64(parts[4])) < 8 or len(_unb64(parts[5])) < 16:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ValueError(
            "the password hash is not one `python -m faxgate.web.access` makes"
        ) from None


def verify_password(setting: str, given: str) -> bool:
    """Whether `given` is the password the setting holds or hashes; blocking for a hash."""
    if not is_hash(setting):
        return hmac.compare_digest(setting.encode(), given.encode())
    _scheme, n, r, p, salt, expected = setting.split("$")
    want = _unb64(expected)
    got = hashlib.scrypt(
        given.encode(),
        salt=_unb64(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(want),
        maxmem=256 * 1024 * 1024,
    )
    return hmac.compare_digest(got, want)


class StatusAccess:
    """Decides whether a request may see a status page.

    Open when neither a password nor a trusted header is set. With both, either will do.
    """

    def __init__(self, *, user: str = "", password: str = "", trust_header: str = "") -> None:
        if password and is_hash(password):
            check_hash(password)
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
        if is_hash(self._password):
            password_ok = await asyncio.to_thread(verify_password, self._password, password)
        else:
            password_ok = verify_password(self._password, password)
        if not (user_ok and password_ok):
            return False
        self._good[key] = None
        if len(self._good) > _REMEMBERED:
            self._good.popitem(last=False)
        return True


def main() -> int:
    """Print the hash of a password typed twice, for the `status_password` setting."""
    first = getpass.getpass("status page password: ")
    if not first:
        print("an empty password protects nothing", file=sys.stderr)
        return 1
    if getpass.getpass("again: ") != first:
        print("the two did not match", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
