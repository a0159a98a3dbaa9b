"""The status pages' password: its hash, checking one, and whether a listen address is
loopback (when no password is needed). Standard library only: the settings use it, and
loading the settings must stay light.

`python -m faxgate.web.passwords` asks for a password twice and prints the hash to put in
`http.status_password` instead of the password itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import sys
from typing import Final

__all__ = ["check_hash", "hash_password", "is_hash", "is_loopback", "verify_password"]

_SCHEME: Final = "scrypt"
# scrypt's cost: about 50 ms and 16 MiB a check; a good answer is remembered, so a
# browser asking for every page and image pays it once.
_N: Final = 2**14
_R: Final = 8
_P: Final = 1


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
            "the password hash is not one `python -m faxgate.web.passwords` makes"
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


def main() -> int:
    """Print the hash of a password typed twice, for the `status_password` setting."""
    import getpass  # only this command asks for a password

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
