"""SMTP AUTH for the listener: users' passwords checked against their scrypt hashes
(faxgate.domain.passwords). Checking costs tens of milliseconds of CPU by design, so the
listener runs it in a worker thread; an unknown user costs as much as a known one, so the
time of a refusal does not tell which names exist.

Guessing is slowed down per client address (AuthLimiter): after a few failed logins each
further attempt waits, twice as long each time, and after many the address is refused for
a while. A success forgets its failures.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from faxgate.domain.passwords import (
    DEFAULT_N,
    DEFAULT_P,
    DEFAULT_R,
    KEY_BYTES,
    SALT_BYTES,
    PasswordHash,
    parse_hash,
    verify_password,
)

FREE_FAILURES: Final = 5  # failed logins from one address before any wait: typos cost nothing
MAX_DELAY: Final = 30.0  # seconds: the longest wait before an attempt is answered
MAX_TRACKED: Final = 10_000  # client addresses remembered at once
_DOUBLINGS: Final = 16  # past this many, the delay has long reached its cap


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
