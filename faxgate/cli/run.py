"""`faxgate run`: the daemon in the foreground (systemd runs it so too)."""

from __future__ import annotations

import argparse
import logging
import sys

from faxgate import app
from faxgate.cli.common import Subparsers, settings_from


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run the daemon in the foreground (on the sandbox by default)"
    )
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    level = logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper())
    logging.getLogger().setLevel(level)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # The scheduler logs every tick at INFO; faxgate logs what the tick does.
    # Libraries log every request or tick at INFO; faxgate logs what they mean.
    for noisy in ("apscheduler", "httpx", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    print(f"faxgate: starting; state in {settings.state_dir}; Ctrl-C stops", file=sys.stderr)
    return app.run(settings)
