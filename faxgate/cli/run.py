"""`faxgate run`: the daemon in the foreground (systemd runs it so too)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from faxgate import app, demo, logs
from faxgate.cli.common import Subparsers, settings_from
from faxgate.reload import Reloader
from faxgate.settings import ListenAddress, Settings


def register(subparsers: Subparsers) -> None:
    run = subparsers.add_parser(
        "run", help="run the daemon in the foreground (on the sandbox by default)"
    )
    run.add_argument(
        "--demo",
        action="store_true",
        help="on the built-in sandbox, add a hot folder (<state_dir>/outbox) and deliver"
        " inbound faxes to <state_dir>/inbox and the Maildir, where the settings name none",
    )
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    def load() -> Settings:
        loaded = settings_from(args)
        return demo.demo_settings(loaded) if args.demo else loaded

    settings = load()
    if args.demo:
        for folder in settings.folders:
            folder.path.mkdir(parents=True, exist_ok=True)
    logs.configure(settings.log_level, verbose=args.verbose)
    # SIGHUP reads the settings again the same way: the same --config, environment,
    # credentials and --demo.
    reloader = Reloader(
        load=load, set_log_level=lambda name: logs.set_level(name, verbose=args.verbose)
    )
    print(f"faxgate: starting; state in {settings.state_dir}; Ctrl-C stops", file=sys.stderr)
    show_banner = args.demo or sys.stderr.isatty()
    return app.run(settings, reloader, on_ready=print_banner if show_banner else None)


def print_banner(daemon: app.Daemon) -> None:
    smtp = daemon.smtp
    print(
        demo.banner(
            daemon.settings,
            smtp=ListenAddress(smtp.host, smtp.port) if smtp is not None else None,
            http=ListenAddress(daemon.http.host, daemon.http.port),
            sandbox_url=daemon.sandbox.base_url if daemon.sandbox is not None else None,
            faxgate=_typed_command(),
        ),
        file=sys.stderr,
        flush=True,
    )


def _typed_command() -> str:
    """How the user can type this faxgate: plain `faxgate` when the PATH finds this one,
    else its path (`python -m faxgate` runs the one beside that Python)."""
    script = Path(sys.argv[0])
    here = script if script.name == "faxgate" else Path(sys.executable).with_name("faxgate")
    on_path = shutil.which("faxgate")
    if on_path is not None and Path(on_path).resolve() == here.resolve():
        return "faxgate"
    return os.path.relpath(here.absolute()) if here.exists() else f"{sys.executable} -m faxgate"
