"""The kinds of value the settings are made of: listen addresses, durations, sections."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
)
from pydantic_settings import (
    NoDecode,
)

HELLOFAX_BASE_URL = "https://api.hellofax.com/v1"
DROPBOX_FAX_BASE_URL = "https://api.hellosign.com/v3"


class ListenAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def each_matching(values: list[str], pattern: str, expected: str) -> list[str]:
    """The values, each matching the pattern as a whole; else "expected ..." is raised."""
    for value in values:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"expected {expected}")
    return values


def country_codes(values: list[str]) -> list[str]:
    """Two-letter country codes, upper-cased."""
    codes = each_matching(values, r"[A-Za-z]{2}", 'two-letter country codes such as ["US", "CA"]')
    return [code.upper() for code in codes]


# Patterns, not compiled ones: re compiles (and caches) them on first use, not at import.
_LISTEN_PATTERN = r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$"


def _parse_listen(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError('expected "host:port", for example "127.0.0.1:2525"')
    match = re.match(_LISTEN_PATTERN, value.strip())
    if not match:
        raise ValueError('expected "host:port", for example "127.0.0.1:2525" or "[::1]:2525"')
    port = int(match["port"])
    if not 0 <= port <= 65535:
        raise ValueError("the port must be between 0 and 65535")
    return ListenAddress(match["v6"] or match["host"], port)


Listen = Annotated[
    ListenAddress,
    NoDecode,  # "host:port" is plain text, not JSON, also in FAXGATE_* variables
    BeforeValidator(_parse_listen),
    PlainSerializer(str, return_type=str),
]


_DURATION_PATTERN = r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"


def _parse_duration(value: object) -> timedelta:
    """Seconds as a number, or text like "90s", "5m", "1h30m"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif (
        isinstance(value, str)
        and (match := re.match(_DURATION_PATTERN, value.strip()))
        and value.strip()
    ):
        hours, minutes, secs = (float(match[k] or 0) for k in ("h", "m", "s"))
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise ValueError('expected a duration such as 30, "90s", "5m" or "1h30m"')
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - int(seconds)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if secs or fraction or not text:
        text += f"{secs + fraction:g}s"
    return text


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str),
]


def _longer_than_zero(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("a duration longer than zero")
    return value


# A window or an interval: zero would mean a loop that never waits.
PositiveDuration = Annotated[Duration, AfterValidator(_longer_than_zero)]


class _Section(BaseModel):
    # A section's validator is built when a section is made on its own; within Settings the
    # whole settings' validator covers it, so the CLI never builds both.
    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True)
