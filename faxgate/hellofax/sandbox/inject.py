"""Injecting an inbound fax into a running sandbox, as `faxgate sandbox inbound` does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from faxgate.sandbox.control import control_url


class InjectionRefused(Exception):
    """The sandbox refused the fax; the message says why."""


async def inject_inbound(base_url: str, to: str, from_: str, document: Path) -> dict[str, Any]:
    """Make a fax from `from_` arrive at the account's line `to`; returns its transmission."""
    content = await asyncio.to_thread(document.read_bytes)
    form = aiohttp.FormData()
    form.add_field("to", to)
    form.add_field("from", from_)
    form.add_field("file", content, filename=document.name)
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(control_url(base_url, "inbound"), data=form) as answer,
    ):
        text = await answer.text()
        if answer.status != 200:
            raise InjectionRefused(_message(text) or f"HTTP {answer.status}")
    transmission: dict[str, Any] = json.loads(text)["Transmission"]
    return transmission


def _message(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text.strip()
