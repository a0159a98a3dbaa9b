"""The composition root: builds every part from the settings, runs them, stops them.

Parts start in order and stop in reverse (an AsyncExitStack), so a part only ever sees
the parts it depends on alive. SIGTERM and SIGINT end the run cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from faxgate.hellofax import sandbox as sandbox_server
from faxgate.settings import Settings
from faxgate.store import Store

log = logging.getLogger("faxgate")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the daemon until `stop` is set."""
    async with contextlib.AsyncExitStack() as parts:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        if settings.provider.kind == "sandbox" and not settings.provider.base_url:
            sandbox = sandbox_server.Sandbox(sandbox_settings(settings))
            await sandbox.start()
            parts.push_async_callback(sandbox.stop)
            log.info("sandbox listening base_url=%s", sandbox.base_url)
        store = Store.open(settings.database_path)
        parts.callback(store.close)
        log.info(
            "faxgate ready provider=%s base_url=%s state_dir=%s",
            settings.provider.kind,
            settings.provider_base_url(),
            settings.state_dir,
        )
        await stop.wait()
        log.info("faxgate stopping")


def sandbox_settings(settings: Settings) -> sandbox_server.SandboxSettings:
    account_guid, username, password = settings.provider_credentials()
    return sandbox_server.SandboxSettings(
        host=settings.sandbox.listen.host,
        port=settings.sandbox.listen.port,
        account_guid=account_guid,
        username=username,
        password=password,
        state_dir=settings.sandbox_state_dir,
        speed=sandbox_server.resolve_speed(settings.sandbox.speed),
    )


def run(settings: Settings) -> int:
    """Run in the foreground until SIGTERM or SIGINT; the exit code for the shell."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    asyncio.run(main())
    return 0
