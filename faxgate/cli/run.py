"""`faxgate run`: the daemon in the foreground (systemd runs it so too)."""

from __future__ import annotations

import argparse
import logging
import sys

from faxgate import app
from faxgate.cli.common import Subparsers, settings_from
from faxgate.reload import Reloader

# Libraries log every request or tick at INFO; faxgate logs what they mean.
_NOISY = ("apscheduler", "httpx", "aiohttp.access")


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run the daemon in the foreground (on the sandbox by default)"
    )
    run.set_defaults(func=run_command)


def set_log_level(name: str, *, verbose: bool) -> None:
    """The level of faxgate's log ("info"); --verbose keeps debugging detail whatever it is."""
    level = logging.DEBUG if verbose else getattr(logging, name.upper())
    logging.getLogger().setLevel(level)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    set_log_level(settings.log_level, verbose=args.verbose)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # SIGHUP reads the settings again the same way: the same --config, environment and
    # credentials.
    reloader = Reloader(
        load=lambda: settings_from(args),
        set_log_level=lambda name: set_log_level(name, verbose=args.verbose),
    )
    print(f"faxgate: starting; state in {settings.state_dir}; Ctrl-C stops", file=sys.stderr)
    return app.run(settings, reloader)
