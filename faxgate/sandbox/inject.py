"""Injecting an inbound fax into a running sandbox (any face), as `faxgate sandbox inbound` does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from faxgate.sandbox.control import control_url


class InjectionRefused(Exception):
    """The sandbox refused the fax; the message says why."""


async def post_inbound(base_url: str, to: str, from_: str, document: Path) -> str:
    """Make a fax from `from_` arrive at the account's line `to`; the face's answer (JSON)."""
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
    return text


def _message(text: str) -> str:
    try:
        error = json.loads(text)["error"]
        return str(error.get("message") or error["error_msg"])  # v1's shape, or v3's
    except (ValueError, KeyError, TypeError):
        return text.strip()
