"""`faxgate config check`: validate the settings and show the effective values."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import tomli_w

from faxgate.cli.common import (
    EXIT_OK,
    Subparsers,
    add_command_group,
    add_json_flag,
    print_json,
    settings_from,
)


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(subparsers, "config", "settings")
    check = commands.add_parser(
        "check", help="validate the settings and print the effective values, secrets masked"
    )
    add_json_flag(check)
    check.set_defaults(func=check_command)


def check_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    from faxgate.settings import masked_dump  # loaded by settings_from, as it says why
    from faxgate.setup_warnings import setup_warnings

    data = masked_dump(settings)
    warnings = setup_warnings(settings)
    if args.json:
        print_json(
            {"source": str(settings.source_file or ""), "settings": data, "warnings": warnings}
        )
        return EXIT_OK
    for warning in warnings:
        print(f"faxgate: warning: {warning}", file=sys.stderr)
    origin = settings.source_file or "built-in defaults"
    print(f"# settings are valid; read from {origin} and FAXGATE_* variables")
    print(_as_toml(data))
    return EXIT_OK


def _as_toml(data: dict[str, Any]) -> str:
    """The settings as a TOML file would hold them; unset values (TOML has no null) are
    left out."""
    return tomli_w.dumps(_without_none(data))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value if item is not None]
    return value
