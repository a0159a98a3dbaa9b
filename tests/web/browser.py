"""Headless Chromium driven over the DevTools protocol: open a page, wait for it to load,
ask it things, type into it, take a screenshot. Only what the status page tests need."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests import peers
from tests.conftest import wait_for

DEADLINE = 90.0  # seconds: a cold Chromium on two busy cores is slow


class Tab:
    """One page target, attached with its own session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: str) -> None:
        self._ws = ws
        self._session = session
        self._ids = itertools.count(1000)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await _call(self._ws, self._ids, method, params, self._session)

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self._settled(f"location.href === {json.dumps(url)}")

    async def _settled(self, condition: str) -> None:
        """Wait until the page is the one wanted and fully loaded (a load event alone may
        be the page before's, arriving late)."""

        async def ready() -> bool | None:
            try:
                done = await self.value(f"document.readyState === 'complete' && ({condition})")
            except AssertionError:  # the page went away while asked: still navigating
                return None
            return True if done else None

        await wait_for(ready, timeout=DEADLINE, what=condition)

    async def value(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def type_and_enter(self, selector: str, typed: str) -> None:
        """Type into a field as a person would, then press Enter; wait for the next page."""
        before = await self.value("location.href")
        await self.value(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.call("Input.insertText", text=typed)
        for kind in ("keyDown", "keyUp"):
            await self.call(
                "Input.dispatchKeyEvent",
                type=kind,
                key="Enter",
                code="Enter",
                windowsVirtualKeyCode=13,
                text="\r" if kind == "keyDown" else "",
            )
        await self._settled(f"location.href !== {json.dumps(before)}")

    async def screenshot(self, path: Path) -> bytes:
        answer = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(answer["data"])
        await asyncio.to_thread(path.write_bytes, data)
        return data


async def _call(
    ws: aiohttp.ClientWebSocketResponse,
    ids: itertools.count[int],
    method: str,
    params: dict[str, Any],
    session: str | None,
) -> dict[str, Any]:
    call_id = next(ids)
    message: dict[str, Any] = {"id": call_id, "method": method, "params": params}
    if session is not None:
        message["sessionId"] = session
    await ws.send_json(message)
    while True:
        answer = await ws.receive_json(timeout=DEADLINE)
        if answer.get("id") == call_id:
            if "error" in answer:
                raise AssertionError(f"{method}: {answer['error']}")
            result: dict[str, Any] = answer.get("result", {})
            return result
        # Anything else is an event this driver does not need.


# Headless, nothing of its own fetched or updated: a Chromium the tests start in a
# profile folder of their own (`HOME` there too).
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Tab]:
    """A headless Chromium with one tab, gone on exit."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        peers.command("chromium"),
        *HEADLESS,
        "--hide-scrollbars",
        "--window-size=1100,900",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "HOME": str(profile)},
    )
    try:
        port_file = profile / "DevToolsActivePort"

        def browser_url() -> str | None:
            if process.returncode is not None:
                raise AssertionError(f"chromium exited with {process.returncode}")
            lines = port_file.read_text().split() if port_file.is_file() else []
            return f"ws://127.0.0.1:{lines[0]}{lines[1]}" if len(lines) >= 2 else None

        url = await wait_for(browser_url, timeout=DEADLINE, what="chromium's DevTools port")
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(url, max_msg_size=0) as ws,
        ):
            ids = itertools.count(1)
            target = await _call(ws, ids, "Target.createTarget", {"url": "about:blank"}, None)
            attached = await _call(
                ws,
                ids,
                "Target.attachToTarget",
                {"targetId": target["targetId"], "flatten": True},
                None,
            )
            tab = Tab(ws, attached["sessionId"])
            await tab.call(
                "Emulation.setDeviceMetricsOverride",
                width=1100,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield tab
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
