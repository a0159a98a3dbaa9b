"""`faxgate sandbox`: run the built-in HelloFax sandbox; `faxgate sandbox inbound`: fax it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import aiohttp
from pydantic import ValidationError

from faxgate.hellofax.sandbox import (
    DEFAULT_ACCOUNT_GUID,
    DEFAULT_PASSWORD,
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    DEFAULT_USERNAME,
    SPEED_PRESETS,
    InjectionRefused,
    Sandbox,
    SandboxSettings,
    inject_inbound,
    resolve_speed,
)
from faxgate.sandbox.control import control_url

DEFAULT_SPEED = "quick"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run the built-in HelloFax-compatible sandbox",
        description="Serve the HelloFax v1 API locally, with a sandbox account (docs/sandbox.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        help=f"{', '.join(SPEED_PRESETS)} or a multiplier of real timings (default: quick)",
    )
    parser.add_argument(
        "--removal",
        choices=("sent", "sent_and_failed", "nothing"),
        default="sent",
        help="which ended faxes leave the API, as HelloFax removes sent ones (default: sent)",
    )
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--account-guid", default=DEFAULT_ACCOUNT_GUID)
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.set_defaults(func=run)
    commands = parser.add_subparsers(dest="sandbox_command", metavar="COMMAND")
    inbound = commands.add_parser(
        "inbound",
        help="make a fax arrive at one of the sandbox account's lines",
        description="Inject an inbound fax into a running sandbox.",
    )
    inbound.add_argument("--to", required=True, metavar="LINE", help="the account's line")
    inbound.add_argument("--from", dest="from_", required=True, metavar="NUMBER")
    inbound.add_argument("file", type=Path, metavar="FILE", help="the document received")
    inbound.add_argument(
        "--url",
        default=f"http://127.0.0.1:{DEFAULT_PORT}/v1",
        help="the running sandbox's base URL",
    )
    inbound.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "sandbox_command", None) == "inbound":
        return inbound(args)
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    try:
        settings = SandboxSettings(
            host=args.host,
            port=args.port,
            speed=args.speed,
            removal=args.removal,
            state_dir=args.state_dir,
            account_guid=args.account_guid,
            username=args.username,
            password=args.password,
        )
    except ValidationError as problem:
        for error in problem.errors(include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"faxgate sandbox: {where}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(settings))
    except OSError as problem:
        print(f"faxgate sandbox: cannot serve: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: SandboxSettings) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread can take signals; elsewhere Ctrl-C is not ours to catch.
        with contextlib.suppress(RuntimeError, NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    async with Sandbox(settings) as sandbox:
        # These credentials open only this local sandbox; printing them is the point.
        print(
            f"HelloFax sandbox running (speed {settings.speed:g})\n"
            f"  base URL:     {sandbox.base_url}\n"
            f"  account GUID: {settings.account_guid}\n"
            f"  username:     {settings.username}\n"
            f"  password:     {settings.password}\n"
            f"  state:        {settings.state_dir}\n"
            f"  control:      {control_url(sandbox.base_url, '')} (loopback only)\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await stopping.wait()


def inbound(args: argparse.Namespace) -> int:
    try:
        transmission = asyncio.run(inject_inbound(args.url, args.to, args.from_, args.file))
    except InjectionRefused as refused:
        print(f"faxgate sandbox inbound: refused: {refused}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as problem:
        print(f"faxgate sandbox inbound: {problem}", file=sys.stderr)
        return 1
    print(
        f"received {transmission['Guid']} at {transmission['To']} from {transmission['From']}"
        f" ({transmission['NumPagesBilled']} pages)"
    )
    return 0


def _speed(value: str) -> float:
    try:
        return resolve_speed(value)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
