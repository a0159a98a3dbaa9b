"""`faxgate run`: the daemon in the foreground (systemd runs it so too)."""

from __future__ import annotations

import argparse
import sys

from faxgate import app, logs
from faxgate.cli.common import Subparsers, settings_from
from faxgate.reload import Reloader


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run the daemon in the foreground (on the sandbox by default)"
    )
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    logs.configure(settings.log_level, verbose=args.verbose)
    # SIGHUP reads the settings again the same way: the same --config, environment and
    # credentials.
    reloader = Reloader(
        load=lambda: settings_from(args),
        set_log_level=lambda name: logs.set_level(name, verbose=args.verbose),
    )
    print(f"faxgate: starting; state in {settings.state_dir}; Ctrl-C stops", file=sys.stderr)
    return app.run(settings, reloader)
