"""`faxgate sandbox`: run the built-in sandbox (HelloFax v1, or `--api v3` the Dropbox Fax API
v3); `faxgate sandbox inbound`: fax it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from pydantic import ValidationError

from faxgate.dropbox_fax.sandbox import DEFAULT_API_KEY, DropboxFaxSandbox
from faxgate.dropbox_fax.sandbox import inject_inbound as inject_inbound_v3
from faxgate.hellofax import sandbox_defaults as defaults
from faxgate.hellofax.sandbox import InjectionRefused, Sandbox, SandboxSettings, inject_inbound
from faxgate.sandbox.control import control_url

DEFAULT_SPEED = "quick"
# The options that are settings of the same name.
_SETTINGS = [
    "host",
    "port",
    "speed",
    "removal",
    "state_dir",
    "account_guid",
    "username",
    "password",
    "api_key",
    "rate_window",
]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run the built-in HelloFax-compatible sandbox",
        description="Serve the HelloFax v1 API locally, with a sandbox account (docs/sandbox.md).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=defaults.DEFAULT_PORT, help="0 picks a free port"
    )
    parser.add_argument(
        "--speed",
        type=_speed,
        default=DEFAULT_SPEED,
        help=f"{', '.join(defaults.SPEED_PRESETS)} or a multiplier of real timings"
        " (default: quick)",
    )
    parser.add_argument(
        "--removal",
        choices=("sent", "sent_and_failed", "nothing"),
        default="sent",
        help="which ended faxes leave the API, as HelloFax removes sent ones (default: sent)",
    )
    parser.add_argument("--state-dir", type=Path, default=defaults.DEFAULT_STATE_DIR)
    parser.add_argument("--account-guid", default=defaults.DEFAULT_ACCOUNT_GUID)
    parser.add_argument("--username", default=defaults.DEFAULT_USERNAME)
    parser.add_argument("--password", default=defaults.DEFAULT_PASSWORD)
    parser.add_argument(
        "--api", choices=("v1", "v3"), default="v1", help="v1 (HelloFax) or v3 (Dropbox Fax)"
    )
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="v3: the API key to accept")
    parser.add_argument(
        "--rate-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="v3: the rate limit's window, 100 requests in it (10 in test mode); default 60",
    )
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
        default=f"http://127.0.0.1:{defaults.DEFAULT_PORT}/v1",
        help="the running sandbox's base URL (ending /v3 for the v3 sandbox)",
    )
    inbound.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "sandbox_command", None) == "inbound":
        return inbound(args)
    return serve(args)


def serve(args: argparse.Namespace) -> int:
    try:
        settings = SandboxSettings(**{name: getattr(args, name) for name in _SETTINGS})
    except ValidationError as problem:
        for error in problem.errors(include_input=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"faxgate sandbox: {where}: {error['msg']}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(settings, args.api))
    except OSError as problem:
        print(f"faxgate sandbox: cannot serve: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: SandboxSettings, api: str = "v1") -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread can take signals; elsewhere Ctrl-C is not ours to catch.
        with contextlib.suppress(RuntimeError, NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    v3 = api == "v3"
    async with DropboxFaxSandbox(settings) if v3 else Sandbox(settings) as sandbox:
        # These credentials open only this local sandbox; printing them is the point.
        credentials = (
            f"  API key:      {settings.api_key} (Basic auth, empty password)\n"
            if v3
            else f"  username:     {settings.username}\n  password:     {settings.password}\n"
        )
        print(
            f"{'Dropbox Fax API v3' if v3 else 'HelloFax'} sandbox running"
            f" (speed {settings.speed:g})\n"
            f"  base URL:     {sandbox.base_url}\n"
            f"  account GUID: {settings.account_guid}\n"
            f"{credentials}"
            f"  state:        {settings.state_dir}\n"
            f"  control:      {control_url(sandbox.base_url, '')} (loopback only)\n"
            "Press Ctrl-C to stop.",
            flush=True,
        )
        await stopping.wait()


def inbound(args: argparse.Namespace) -> int:
    try:
        said = asyncio.run(_inject(args))
    except InjectionRefused as refused:
        print(f"faxgate sandbox inbound: refused: {refused}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, OSError) as problem:
        print(f"faxgate sandbox inbound: {problem}", file=sys.stderr)
        return 1
    print(said)
    return 0


async def _inject(args: argparse.Namespace) -> str:
    """Inject as the sandbox at the URL speaks (v3 when it ends /v3); what to print."""
    if urlsplit(args.url).path.rstrip("/").endswith("/v3"):
        fax = await inject_inbound_v3(args.url, args.to, args.from_, args.file)
        to = fax["transmissions"][0]["recipient"]
        return f"received {fax['fax_id']} at {to} from {fax['sender']}"
    transmission = await inject_inbound(args.url, args.to, args.from_, args.file)
    return (
        f"received {transmission['Guid']} at {transmission['To']} from {transmission['From']}"
        f" ({transmission['NumPagesBilled']} pages)"
    )


def _speed(value: str) -> float:
    try:
        return defaults.resolve_speed(value)
    except ValueError as problem:
        raise argparse.ArgumentTypeError(str(problem)) from None
