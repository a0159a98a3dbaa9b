"""Commands for every provider API call: account, fax lines, area codes, transmissions.

They talk to the provider seam (faxgate.domain.provider); the account's callback URLs
are HelloFax v1's own call.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from faxgate.cli import common
from faxgate.cli.common import CommandError
from faxgate.domain.codes import describe_outcome
from faxgate.domain.numbers import (
    NumberPolicy,
    NumberRefused,
    from_provider_digits,
    parse_fax_number,
)
from faxgate.domain.provider import (
    FaxLineInfo,
    FaxPage,
    FaxProvider,
    FaxReport,
    NotSent,
    ProviderError,
)
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.dropbox_fax.models import Account as V3Account
from faxgate.dropbox_fax.models import FaxLine
from faxgate.durable import write_bytes
from faxgate.hellofax.models import Account
from faxgate.hellofax.provider import HelloFaxProvider
from faxgate.providers import open_provider
from faxgate.settings import Settings
from faxgate.web.callbacks import callback_token, callback_urls, event_callback_url


def register(subparsers: common.Subparsers) -> None:
    account = subparsers.add_parser(
        "account", help="show the provider account; set its callback URLs"
    )
    account.add_argument("--inbound-url", metavar="URL", help="set the inbound fax callback URL")
    account.add_argument("--outbound-url", metavar="URL", help="set the outbound fax callback URL")
    account.add_argument(
        "--register-callbacks",
        action="store_true",
        help="point both callback URLs at this faxgate (from http.public_url and the token)",
    )
    common.add_json_flag(account)
    account.set_defaults(func=account_command)

    lines = subparsers.add_parser("lines", help="the account's fax lines (list, buy, delete)")
    common.add_json_flag(lines)
    lines.set_defaults(func=lines_list_command)
    line_commands = lines.add_subparsers(title="lines commands", metavar="COMMAND")
    lines_list = line_commands.add_parser("list", help="list the fax lines (the default)")
    common.add_json_flag(lines_list)
    lines_list.set_defaults(func=lines_list_command)
    buy = line_commands.add_parser("buy", help="buy a new fax number in an area code")
    buy.add_argument("area_code", metavar="AREA_CODE", help="e.g. 415; see `faxgate areacodes`")
    common.add_json_flag(buy)
    buy.set_defaults(func=lines_buy_command)
    delete = line_commands.add_parser("delete", help="give up one of the account's fax lines")
    delete.add_argument("number", metavar="NUMBER", help="the line's number, e.g. 14155550100")
    delete.set_defaults(func=lines_delete_command)
    for verb, what in (
        ("add-user", "let a user of the account use"),
        ("remove-user", "take a user off"),
    ):
        users = line_commands.add_parser(verb, help=f"{what} a fax line (Dropbox Fax API v3)")
        users.add_argument("number", metavar="NUMBER", help="the line's number")
        who = users.add_mutually_exclusive_group(required=True)
        who.add_argument("--email", help="the user's email address")
        who.add_argument("--account-id", help="the user's account id")
        common.add_json_flag(users)
        users.set_defaults(func=lines_user_command, verb=verb)

    areacodes = subparsers.add_parser(
        "areacodes", help="area codes of a US state where fax numbers can be bought"
    )
    areacodes.add_argument("state", metavar="STATE", help="two-letter state code, e.g. CA")
    common.add_json_flag(areacodes)
    areacodes.set_defaults(func=areacodes_command)

    transmissions = subparsers.add_parser(
        "transmissions", help="the provider's transmissions: one by GUID, or the list"
    )
    transmissions.add_argument("guid", metavar="GUID", nargs="?", help="show this one")
    transmissions.add_argument("--page", type=int, help="page of the list to show")
    transmissions.add_argument("--page-size", type=int, help="transmissions per page")
    transmissions.add_argument("--all", action="store_true", help="every page")
    common.add_json_flag(transmissions)
    transmissions.set_defaults(func=transmissions_command)

    fax = subparsers.add_parser("fax", help="one fax at the provider (Dropbox Fax API v3)")
    fax_commands = fax.add_subparsers(title="fax commands", metavar="COMMAND", required=True)
    download = fax_commands.add_parser("download", help="save the fax's final PDF")
    download.add_argument("fax_id", metavar="FAX_ID")
    download.add_argument("-o", "--output", metavar="PATH", help="default: FAX_ID.pdf here")
    download.set_defaults(func=fax_download_command)
    forget = fax_commands.add_parser("delete", help="delete the fax at the provider")
    forget.add_argument("fax_id", metavar="FAX_ID")
    forget.set_defaults(func=fax_delete_command)


def _call(args: argparse.Namespace, action: Callable[[FaxProvider], Awaitable[Any]]) -> Any:
    """Run one API conversation and turn provider errors into a plain message."""
    settings = common.settings_from(args)

    async def conversation() -> Any:
        async with open_provider(settings) as provider:
            return await action(provider)

    try:
        return common.run_async(conversation())
    except ProviderError as exc:
        raise CommandError(_explain(exc, settings)) from None


def _explain(error: ProviderError, settings: Settings) -> str:
    message = f"the provider: {error.message}"
    if isinstance(error, NotSent) and settings.provider.kind == "sandbox":
        message += (
            f"\n(the sandbox at {settings.provider_base_url()} is not running: start it with"
            " `faxgate run` or `faxgate sandbox`)"
        )
    return message


def account_command(args: argparse.Namespace) -> int:
    inbound_url, outbound_url = args.inbound_url, args.outbound_url
    settings = common.settings_from(args)
    if args.register_callbacks and (inbound_url or outbound_url):
        raise CommandError("give --register-callbacks or the URLs, not both")
    if settings.provider_api == "dropbox_fax":
        return _v3_account_command(args, settings)
    if args.register_callbacks:
        inbound_url, outbound_url = _our_callback_urls(settings)

    async def action(provider: FaxProvider) -> Account:
        assert isinstance(provider, HelloFaxProvider)
        client = provider.client
        if inbound_url is not None or outbound_url is not None:
            return await client.update_account(inbound_url=inbound_url, outbound_url=outbound_url)
        return await client.get_account()

    account: Account = _call(args, action)
    rows: list[list[object]] = [
        ["account GUID", account.guid],
        ["inbound callback URL", account.default_inbound_fax_callback_url],
        ["outbound callback URL", account.default_outbound_fax_callback_url],
    ]
    return _print_settings(args, account, rows)


def _print_settings(
    args: argparse.Namespace, model: BaseModel, rows: Sequence[Sequence[object]]
) -> int:
    if args.json:
        common.print_json(model.model_dump(mode="json"))
    else:
        common.print_table(["setting", "value"], rows)
    return common.EXIT_OK


def _v3_account_command(args: argparse.Namespace, settings: Settings) -> int:
    """v3 has one callback URL per account, for every event: faxgate's events URL."""
    if args.inbound_url or args.outbound_url:
        raise CommandError("the Dropbox Fax API v3 has one callback URL: use --register-callbacks")
    url = _our_event_url(settings) if args.register_callbacks else None

    async def action(provider: FaxProvider) -> V3Account:
        client = _v3(provider)
        return await (client.set_callback_url(url) if url else client.account())

    account: V3Account = _call(args, action)
    rows: list[list[object]] = [
        ["account id", account.account_id],
        ["email address", account.email_address],
        ["callback URL", account.callback_url],
    ]
    return _print_settings(args, account, rows)


def _our_callback_urls(settings: Settings) -> tuple[str, str]:
    _need_public_url(settings)
    return callback_urls(settings, callback_token(settings))


def _our_event_url(settings: Settings) -> str:
    _need_public_url(settings)
    return event_callback_url(settings, callback_token(settings))


def _need_public_url(settings: Settings) -> None:
    if settings.provider.kind != "sandbox" and not settings.http.public_url:
        raise CommandError(
            "set http.public_url first: the address where the provider reaches this faxgate"
            " from the internet (e.g. https://fax.example.com behind a reverse proxy)"
        )


def _line_rows(lines: list[FaxLineInfo]) -> list[list[object]]:
    return [[_pretty(line.number), line.number] for line in lines]


def lines_list_command(args: argparse.Namespace) -> int:
    lines: list[FaxLineInfo] = _call(args, lambda provider: provider.list_fax_lines())
    if args.json:
        common.print_json([dict(line.raw) for line in lines])
    elif not lines:
        print("no fax lines; buy one with `faxgate lines buy AREA_CODE`")
    else:
        common.print_table(["line", "number (as the API writes it)"], _line_rows(lines))
    return common.EXIT_OK


def lines_buy_command(args: argparse.Namespace) -> int:
    area_code = args.area_code.strip()
    if not area_code.isdigit() or len(area_code) != 3:
        raise CommandError(f"{area_code!r} is not an area code: expected three digits, e.g. 415")
    line: FaxLineInfo = _call(args, lambda provider: provider.buy_fax_line(area_code))
    if args.json:
        common.print_json(dict(line.raw))
    else:
        print(f"bought fax line {_pretty(line.number)}")
    return common.EXIT_OK


def lines_delete_command(args: argparse.Namespace) -> int:
    digits = _provider_digits(args.number)
    _call(args, lambda provider: provider.delete_fax_line(digits))
    print(f"deleted fax line {_pretty(digits)}")
    return common.EXIT_OK


def areacodes_command(args: argparse.Namespace) -> int:
    state = args.state.strip().upper()
    if len(state) != 2 or not state.isalpha():
        raise CommandError(f"{args.state!r} is not a state code: expected two letters, e.g. CA")
    codes: list[str] = _call(args, lambda provider: provider.area_codes(state))
    if args.json:
        common.print_json(codes)
    elif not codes:
        print(f"no area codes with free numbers in {state}")
    else:
        print(" ".join(codes))
    return common.EXIT_OK


def transmissions_command(args: argparse.Namespace) -> int:
    if args.guid and (args.page is not None or args.all):
        raise CommandError("give a GUID or --page/--all, not both")

    async def action(provider: FaxProvider) -> list[FaxReport]:
        if args.guid:
            return [await provider.get_fax(args.guid)]
        if args.all:
            return await every_fax(provider, args.page_size)
        page = await provider.list_faxes(page=args.page, page_size=args.page_size)
        return list(page.faxes)

    items: list[FaxReport] = _call(args, action)
    if args.json:
        data = [dict(item.raw) for item in items]
        common.print_json(data[0] if args.guid else data)
    elif not items:
        print("no transmissions")
    else:
        common.print_table(
            ["GUID", "to", "from", "status", "pages", "updated"],
            [
                [
                    item.guid,
                    _pretty(item.to),
                    _pretty(item.from_ or ""),
                    _outcome(item),
                    item.num_pages_billed,
                    _when(item.updated_at or item.created_at),
                ]
                for item in items
            ],
        )
    return common.EXIT_OK


async def every_fax(provider: FaxProvider, page_size: int | None) -> list[FaxReport]:
    """Every fax of the account, page after page, each once. Stops at the last page, and
    also at a link already followed, an empty page or a page number that does not
    advance, so a provider bug cannot loop it forever."""
    page: FaxPage | None = await provider.list_faxes(page_size=page_size)
    followed: set[str] = set()
    seen: dict[str, FaxReport] = {}
    while page is not None:
        for fax in page.faxes:
            seen.setdefault(fax.guid, fax)
        link = page.next_page
        if link is None or link in followed or not page.faxes:
            break
        followed.add(link)
        following = await provider.next_page(page)
        if following is not None and _not_after(following.page, page.page):
            break
        page = following
    return list(seen.values())


def _not_after(page: int | None, previous: int | None) -> bool:
    return page is not None and previous is not None and page <= previous


def _outcome(item: FaxReport) -> str:
    if item.status_code is None:
        return f"unknown ({item.raw.get('status_code', '?')})"
    return describe_outcome(item.status_code, item.error_code)


def _v3(provider: FaxProvider) -> DropboxFaxClient:
    if not isinstance(provider, DropboxFaxClient):
        raise CommandError(f"this command is the Dropbox Fax API v3's; {provider.name} has none")
    return provider


def lines_user_command(args: argparse.Namespace) -> int:
    digits = _provider_digits(args.number)

    async def action(provider: FaxProvider) -> FaxLine:
        client = _v3(provider)
        change = client.add_user if args.verb == "add-user" else client.remove_user
        return await change(digits, account_id=args.account_id, email=args.email)

    line: FaxLine = _call(args, action)
    if args.json:
        common.print_json(line.model_dump(mode="json"))
    else:
        users = ", ".join(a.email_address or a.account_id or "?" for a in line.accounts)
        print(f"fax line {_pretty(line.number)}: {users or 'no users'}")
    return common.EXIT_OK


def fax_download_command(args: argparse.Namespace) -> int:
    target = Path(args.output or f"{args.fax_id}.pdf")
    if target.exists():
        raise CommandError(f"{target} exists; name another file with --output")
    pdf: bytes = _call(args, lambda provider: _v3(provider).download(args.fax_id))
    write_bytes(target, pdf, mode=0o600)
    print(f"saved {target} ({len(pdf)} bytes)")
    return common.EXIT_OK


def fax_delete_command(args: argparse.Namespace) -> int:
    _call(args, lambda provider: _v3(provider).delete_fax(args.fax_id))
    print(f"deleted fax {args.fax_id} at the provider")
    return common.EXIT_OK


def _provider_digits(text: str) -> str:
    try:
        return parse_fax_number(text, NumberPolicy(allow_premium=True)).provider_digits
    except NumberRefused as exc:
        raise CommandError(f"{text!r}: {exc.reason}") from None


def _pretty(digits: str) -> str:
    """ "14155550100" as "+1 415-555-0100"; left as it is when it does not parse."""
    number = from_provider_digits(digits) if digits else None
    return number.display() if number else digits


def _when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""
