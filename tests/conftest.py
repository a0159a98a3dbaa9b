"""Shared by the whole suite: a running HelloFax sandbox, a callback receiver, waiting helpers,
a clean environment for commands and settings."""

from __future__ import annotations

import asyncio
import functools
import inspect
import io
import json
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
import pytest
from aiohttp import BodyPartReader, web
from pypdf import PdfWriter

from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.sandbox import (
    DEFAULT_ACCOUNT_GUID,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SPEED_PRESETS,
    Sandbox,
    SandboxSettings,
)
from faxgate.sandbox.server import SandboxServer
from faxgate.store import Store
from tests.ports import free_port

SANDBOX_GUID = DEFAULT_ACCOUNT_GUID
SANDBOX_USERNAME = DEFAULT_USERNAME
SANDBOX_PASSWORD = DEFAULT_PASSWORD
SANDBOX_LINE = "14155550100"  # the sandbox account's first line

T = TypeVar("T")


def sandbox_settings(state_dir: Path, **overrides: Any) -> SandboxSettings:
    """Settings for a test sandbox: loopback, a free port of this worker's, the "test" speed."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": free_port(),
        "account_guid": SANDBOX_GUID,
        "username": SANDBOX_USERNAME,
        "password": SANDBOX_PASSWORD,
        "state_dir": state_dir,
        "speed": SPEED_PRESETS["test"],
    }
    values.update(overrides)
    return SandboxSettings(**values)


@pytest.fixture
def unused_tcp_port() -> int:
    """pytest-asyncio's fixture of this name, on this worker's own ports (tests/ports.py)."""
    return free_port()


@pytest.fixture
def unused_tcp_port_factory() -> Callable[[], int]:
    """pytest-asyncio's fixture of this name, on this worker's own ports (tests/ports.py)."""
    return free_port


@pytest.fixture
def removal() -> str:
    """The sandbox fixture's removal switch: by default, as the provider does; a test
    parametrizes it ("nothing") to keep ended faxes listed."""
    return "sent"


@pytest.fixture
async def sandbox(tmp_path: Path, removal: str) -> AsyncIterator[Sandbox]:
    """A running sandbox with its state under tmp_path; stopped after the test."""
    async with Sandbox(sandbox_settings(tmp_path / "sandbox", removal=removal)) as running:
        yield running


@functools.cache
def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def sandbox_client(
    sandbox: SandboxServer,
    *,
    timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> HelloFaxClient:
    """A HelloFax client on the sandbox with the account's credentials."""
    return HelloFaxClient(
        sandbox.base_url,
        SANDBOX_GUID,
        SANDBOX_USERNAME,
        SANDBOX_PASSWORD,
        timeout=timeout,
        transport=transport or httpx.AsyncHTTPTransport(verify=tls_context()),
    )


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[HelloFaxClient]:
    """A HelloFax client on the sandbox fixture; closed after the test."""
    async with sandbox_client(sandbox) as opened:
        yield opened


def http_client(**options: Any) -> httpx.AsyncClient:
    """An httpx client that shares one TLS context: building one per client costs ~70 ms."""
    return httpx.AsyncClient(verify=tls_context(), **options)


@pytest.fixture
async def sandbox_api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the sandbox's base URL with the account's credentials."""
    async with http_client(
        base_url=sandbox.base_url, auth=(SANDBOX_USERNAME, SANDBOX_PASSWORD), timeout=10.0
    ) as client:
        yield client


@overload
async def wait_for(
    predicate: Callable[[], Awaitable[T | None]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not an IO timeout
    interval: float = 0.02,
    what: str | None = None,
) -> T: ...


@overload
async def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not an IO timeout
    interval: float = 0.02,
    what: str | None = None,
) -> T: ...


async def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling deadline, not an IO timeout
    interval: float = 0.02,
    what: str | None = None,
) -> Any:
    """Poll `predicate` (plain or async) until it returns something truthy; return that.

    A predicate that has nothing yet may return None, False or an empty collection.

    Raises AssertionError naming what was awaited and the last value seen on timeout.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            name = what or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {name}; last value: {value!r}"
            )
        await asyncio.sleep(interval)


def pdf_document(pages: int, *, title: str | None = None) -> bytes:
    """A real PDF with `pages` blank letter-size pages; with a `title` in its metadata, its
    bytes are its own."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    if title is not None:
        writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@dataclass
class ReceivedCallback:
    """One POST that reached a CallbackReceiver."""

    path: str
    content_type: str
    fields: dict[str, str]
    files: dict[str, tuple[str, bytes, str]]  # part name: (file name, content, content type)
    at: float  # loop time

    @property
    def transaction(self) -> dict[str, Any]:
        """The transmission object inside the `json` part's `Transaction` wrapper."""
        body: dict[str, Any] = json.loads(self.fields["json"])
        transaction: dict[str, Any] = body["Transaction"]
        return transaction


@dataclass
class CallbackReceiver:
    """A small HTTP server that records callbacks and answers with scripted statuses."""

    received: list[ReceivedCallback] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # consumed in order; then 200
    ok_text: str = "ok"  # the body of a 200 (v3 expects its answer phrase)
    _runner: web.AppRunner | None = None
    _port: int = 0

    def url(self, path: str = "/callback") -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    def answer_with(self, *statuses: int) -> None:
        self.answers.extend(statuses)

    def on(self, path: str) -> list[ReceivedCallback]:
        return [callback for callback in self.received if callback.path == path]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        fields: dict[str, str] = {}
        files: dict[str, tuple[str, bytes, str]] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                content = await part.read()
                if part.filename is None:
                    fields[part.name or ""] = content.decode()
                else:
                    files[part.name or ""] = (
                        part.filename,
                        bytes(content),
                        part.headers.get("Content-Type", ""),
                    )
        self.received.append(
            ReceivedCallback(
                path=request.path,
                content_type=request.content_type,
                fields=fields,
                files=files,
                at=asyncio.get_running_loop().time(),
            )
        )
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text=self.ok_text if status == 200 else "not now")


@pytest.fixture
async def callback_receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The test starts in an empty folder with no FAXGATE_* variables or credentials."""
    for name in list(os.environ):
        if name.startswith("FAXGATE_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A new store in tmp_path/state, as faxgate keeps it under its state_dir."""
    with Store.open(tmp_path / "state" / "faxgate.sqlite3") as opened:
        yield opened
