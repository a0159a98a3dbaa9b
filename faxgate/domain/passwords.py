"""Passwords stored as scrypt hashes, never in clear. Pure: no IO.

A stored password reads ``scrypt$<n>$<r>$<p>$<salt>$<hash>``: scrypt's cost parameters
(n a power of two), then the salt and the derived key in standard base64. `faxgate smtp
hash-password` makes one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Final

SCHEME: Final = "scrypt"
DEFAULT_N: Final = 2**14  # 16 MiB of memory and ~50 ms per check with r = 8
DEFAULT_R: Final = 8
DEFAULT_P: Final = 1
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
_MAX_N: Final = 2**20
_MAX_R: Final = 32
_MAX_P: Final = 16


class BadPasswordHash(ValueError):
    """A stored password that is not in the scrypt format faxgate writes."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode("ascii")
        key = base64.b64encode(self.key).decode("ascii")
        return f"{SCHEME}${self.n}${self.r}${self.p}${salt}${key}"

    def derive(self, password: bytes) -> bytes:
        return hashlib.scrypt(
            password,
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.key),
            maxmem=_memory(self.n, self.r, self.p),
        )


def _memory(n: int, r: int, p: int) -> int:
    # scrypt needs 128 * r * n bytes for its table, plus 128 * r * p; and some slack.
    return 128 * r * (n + p) + 2**20


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """The stored form of a password, with a fresh random salt."""
    if not password:
        raise ValueError("an empty password cannot be stored")
    _check_costs(n, r, p)
    salt = secrets.token_bytes(SALT_BYTES)
    template = PasswordHash(n, r, p, salt, b"\0" * KEY_BYTES)
    key = template.derive(password.encode("utf-8"))
    return PasswordHash(n, r, p, salt, key).encode()


def parse_hash(text: str) -> PasswordHash:
    """Read a stored password; BadPasswordHash (which never quotes the text) if it is not one."""
    parts = text.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise BadPasswordHash(
            'expected "scrypt$n$r$p$salt$hash", as `faxgate smtp hash-password` prints it'
        )
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise BadPasswordHash("the scrypt parameters or the base64 parts are damaged") from None
    _check_costs(n, r, p)
    if len(salt) < 8 or len(key) < 16:
        raise BadPasswordHash("the salt or the hash is too short")
    return PasswordHash(n, r, p, salt, key)


def _check_costs(n: int, r: int, p: int) -> None:
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0):
        raise BadPasswordHash(f"scrypt's n must be a power of two up to {_MAX_N}")
    if not (1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise BadPasswordHash(f"scrypt's r must be 1 to {_MAX_R} and p 1 to {_MAX_P}")


def verify_password(password: bytes, stored: PasswordHash) -> bool:
    return hmac.compare_digest(stored.derive(password), stored.key)
