"""SMTP AUTH for the listener: users' passwords, stored as scrypt hashes, never in clear.

A stored password reads ``scrypt$<n>$<r>$<p>$<salt>$<hash>``: scrypt's cost parameters
(n a power of two), then the salt and the derived key in standard base64. `faxgate smtp
hash-password` makes one. Checking costs tens of milliseconds of CPU by design, so the
listener runs it in a worker thread; an unknown user costs as much as a known one, so the
time of a refusal does not tell which names exist.

Guessing is slowed down per client address (AuthLimiter): after a few failed logins each
further attempt waits, twice as long each time, and after many the address is refused for
a while. A success forgets its failures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
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

FREE_FAILURES: Final = 5  # failed logins from one address before any wait: typos cost nothing
MAX_DELAY: Final = 30.0  # seconds: the longest wait before an attempt is answered
MAX_TRACKED: Final = 10_000  # client addresses remembered at once
_DOUBLINGS: Final = 16  # past this many, the delay has long reached its cap


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


class Authenticator:
    """Checks a login and password against the configured users. Blocking (scrypt)."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {name: parse_hash(encoded) for name, encoded in users.items()}
        # Checked when the name is unknown, so that a refusal takes as long either way.
        self._decoy = PasswordHash(
            DEFAULT_N, DEFAULT_R, DEFAULT_P, secrets.token_bytes(SALT_BYTES), bytes(KEY_BYTES)
        )

    def __bool__(self) -> bool:
        return bool(self._users)

    def check(self, login: bytes, password: bytes) -> str | None:
        """The user's name when the password is theirs; None otherwise."""
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        stored = self._users.get(name)
        if stored is None:
            verify_password(password, self._decoy)
            return None
        return name if verify_password(password, stored) else None


# ---------------------------------------------------------------------------- guessing


@dataclass(frozen=True, slots=True)
class Throttle:
    """What the next AUTH attempt from a client gets."""

    delay: float  # seconds to wait before it is answered
    refused: bool  # refused outright (421) and the connection closed


_FREE: Final = Throttle(0.0, refused=False)


class AuthLimiter:
    """Failed logins per client address, over a sliding window. Pure: time is `clock`.

    Once `free_failures` failures fall within `window`, each further attempt waits
    `first_delay`, doubled per further failure, up to `max_delay` (0: no wait). Once
    `max_failures` do (0: never), attempts are refused until the oldest of them is older
    than the window. A success forgets the address's failures.
    """

    def __init__(
        self,
        *,
        first_delay: float,
        max_failures: int,
        window: float,
        free_failures: int = FREE_FAILURES,
        max_delay: float = MAX_DELAY,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(first_delay, max_failures, window, free_failures) < 0:
            raise ValueError("delays, counts and the window cannot be negative")
        self.first_delay = first_delay
        self.max_failures = max_failures
        self.window = window
        self.free_failures = free_failures
        self.max_delay = max(max_delay, first_delay)
        self.max_tracked = max_tracked
        self.clock = clock
        self._kept = max(max_failures, free_failures + _DOUBLINGS)
        self._failures: dict[str, deque[float]] = {}

    def next_attempt(self, client: str) -> Throttle:
        """The throttle for the client's next attempt, before it is checked."""
        return self._throttle(self._recent(client))

    def failed(self, client: str) -> Throttle:
        """Note a failed attempt; the throttle for the client's next one."""
        times = self._failures.pop(client, None) or deque(maxlen=self._kept)
        times.append(self.clock())
        self._failures[client] = times  # last in the dict: the most recent failure
        self._forget_old()
        return self._throttle(self._recent(client))

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def tracked(self) -> int:
        """Addresses with failures remembered (bounded by max_tracked)."""
        return len(self._failures)

    def _recent(self, client: str) -> int:
        times = self._failures.get(client)
        if not times:
            return 0
        since = self.clock() - self.window
        while times and times[0] <= since:
            times.popleft()
        if not times:
            del self._failures[client]
        return len(times)

    def _throttle(self, failures: int) -> Throttle:
        if self.max_failures and failures >= self.max_failures:
            return Throttle(0.0, refused=True)
        if not self.first_delay or failures < self.free_failures:
            return _FREE
        doublings = min(failures - self.free_failures, _DOUBLINGS)
        return Throttle(min(self.first_delay * 2**doublings, self.max_delay), refused=False)

    def _forget_old(self) -> None:
        """Keep memory bounded under many addresses: expired ones first, then the oldest."""
        if len(self._failures) <= self.max_tracked:
            return
        since = self.clock() - self.window
        for client in [c for c, times in self._failures.items() if times[-1] <= since]:
            del self._failures[client]
        while len(self._failures) > self.max_tracked:
            del self._failures[next(iter(self._failures))]
