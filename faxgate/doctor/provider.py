"""The provider's side: the account answers, posts to this faxgate, and has its lines."""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

from faxgate.doctor.findings import OK, PROBLEM, SKIPPED, Finding, count
from faxgate.domain.numbers import from_provider_digits
from faxgate.domain.provider import (
    FaxProvider,
    NotSent,
    ProviderError,
    ProviderFault,
    RateLimited,
)
from faxgate.dropbox_fax.client import DropboxFaxClient
from faxgate.hellofax.client import HelloFaxClient
from faxgate.hellofax.errors import HelloFaxError
from faxgate.hellofax.models import Account
from faxgate.hellofax.provider import HelloFaxProvider, open_client
from faxgate.providers import open_provider
from faxgate.settings import Settings
from faxgate.web.callbacks import callback_urls, event_callback_url, known_callback_token

_CALLBACK_TOKEN_SEGMENT: Final = re.compile(r"/callbacks/([^/]+)/")


async def check_provider(settings: Settings) -> list[Finding]:
    """The account, where it posts, and its lines: on either API."""
    if settings.provider_api == "dropbox_fax":
        return await _check_v3(settings)
    found: list[Finding] = []
    async with open_client(settings) as client:
        account = await _check_account(client, settings, found)
        if account is None:
            why = "not checked: the provider did not answer about the account (see above)"
            found += [Finding("callbacks", SKIPPED, why), Finding("fax lines", SKIPPED, why)]
        else:
            found.append(_check_callbacks(settings, account))
            found += await _check_lines(HelloFaxProvider(client), settings)
    return found


def _builtin_sandbox(settings: Settings) -> bool:
    return settings.provider.kind == "sandbox" and not settings.provider.base_url


def _provider_name(settings: Settings) -> str:
    url = settings.provider_base_url()
    if _builtin_sandbox(settings):
        return f"the built-in sandbox at {url}"
    if settings.provider.kind == "sandbox":
        return f"the sandbox at {url}"
    if settings.provider.kind == "dropbox_fax":
        return f"the Dropbox Fax API at {url}"
    return f"HelloFax at {url}"


async def _check_account(
    client: HelloFaxClient, settings: Settings, found: list[Finding]
) -> Account | None:
    name = _provider_name(settings)
    try:
        account = await client.get_account()
    except HelloFaxError as exc:
        found.append(
            Finding("provider", PROBLEM, f"{name}: {exc.message}", _account_fix(exc, settings))
        )
        return None
    _, username, _ = settings.provider_credentials()
    found.append(
        Finding(
            "provider", OK, f"{name} accepts the credentials of account {account.guid} ({username})"
        )
    )
    return account


def _account_fix(error: ProviderError, settings: Settings) -> str:
    if isinstance(error, NotSent):
        if _builtin_sandbox(settings):
            return (
                "start faxgate (`faxgate run` starts the built-in sandbox), or a standalone "
                "sandbox with `faxgate sandbox`"
            )
        host = urlsplit(settings.provider_base_url()).hostname
        return f"check this machine's network, DNS and proxy towards {host}, and provider.base_url"
    if isinstance(error, RateLimited | ProviderFault):
        return "try again in a few minutes: the provider is failing or busy, not the settings"
    if error.status == 404:
        return "check provider.account_guid: the account's 40-character GUID"
    if error.status in (401, 403):
        return (
            "check provider.username and the password (FAXGATE_PROVIDER__PASSWORD, or the "
            "systemd credential provider.password)"
        )
    return "check the [provider] settings against the account"


def _check_callbacks(settings: Settings, account: Account) -> Finding:
    if settings.provider.kind == "hellofax" and not settings.http.public_url:
        return Finding(
            "callbacks",
            PROBLEM,
            "http.public_url is not set, so the provider has no address to post to: outcomes "
            "come only by polling (slower) and inbound faxes do not arrive",
            "set http.public_url to the address where the provider reaches this faxgate "
            "(e.g. https://fax.example.com behind a reverse proxy), then run "
            "`faxgate account --register-callbacks`",
        )
    if not settings.http.public_url and settings.http.listen.port == 0:
        return Finding(
            "callbacks",
            SKIPPED,
            "http.listen takes any free port, so the URLs are known only once faxgate runs",
        )
    register = (
        "restart faxgate (it registers them with its built-in sandbox as it starts), or run "
        "`faxgate account --register-callbacks`"
        if _builtin_sandbox(settings)
        else "run `faxgate account --register-callbacks`"
    )
    try:
        token = known_callback_token(settings)
    except OSError as exc:
        return Finding(
            "callbacks",
            PROBLEM,
            f"cannot read the callback token {settings.callback_token_path}: {exc.strerror or exc}",
            "run the doctor as the user faxgate runs as (e.g. `sudo -u faxgate faxgate "
            "doctor`), with the same settings",
        )
    if token is None:
        return Finding(
            "callbacks",
            PROBLEM,
            "this faxgate has no callback token yet (one is made on the first start, or set "
            "http.callback_token), so the account cannot be posting to it",
            register,
        )
    expected = callback_urls(settings, token)
    actual = (
        account.default_inbound_fax_callback_url or "",
        account.default_outbound_fax_callback_url or "",
    )
    wrong = [
        f"{what} go {f'to {_shown(got, token)}' if got else 'nowhere (no URL set)'}, but this "
        f"faxgate expects {_shown(want, token)}"
        for what, got, want in zip(
            ("inbound faxes", "outcomes of sent faxes"), actual, expected, strict=True
        )
        if got != want
    ]
    if wrong:
        return Finding("callbacks", PROBLEM, "; ".join(wrong), register)
    base = _shown(expected[0], token).removesuffix("/inbound")
    return Finding(
        "callbacks",
        OK,
        f"the account posts outcomes and inbound faxes to this faxgate ({base}/...)",
    )


def _shown(url: str, token: str) -> str:
    """A callback URL with its secret left out: whether it is this faxgate's token shows."""

    def masked(match: re.Match[str]) -> str:
        return "/callbacks/<token>/" if match[1] == token else "/callbacks/<another token>/"

    return _CALLBACK_TOKEN_SEGMENT.sub(masked, url)


async def _check_v3(settings: Settings) -> list[Finding]:
    """The account read with the API key, its one callback URL, and its lines."""
    name = _provider_name(settings)
    async with open_provider(settings) as provider:
        assert isinstance(provider, DropboxFaxClient)
        try:
            account = await provider.account()
        except ProviderError as exc:
            fix = _account_fix(exc, settings)
            if exc.status in (401, 403):
                fix = (
                    "check provider.api_key (FAXGATE_PROVIDER__API_KEY, or the systemd "
                    "credential provider.api_key)"
                )
            why = "not checked: the provider did not accept the API key (see above)"
            return [
                Finding("provider", PROBLEM, f"{name}: {exc.message}", fix),
                Finding("callbacks", SKIPPED, why),
                Finding("fax lines", SKIPPED, why),
            ]
        who = account.email_address or account.account_id or "?"
        found = [Finding("provider", OK, f"{name} accepts the API key of {who}")]
        found.append(_check_event_url(settings, account.callback_url or ""))
        found += await _check_lines(provider, settings)
    return found


def _check_event_url(settings: Settings, actual: str) -> Finding:
    token = known_callback_token(settings)
    if not settings.http.public_url and settings.provider.kind == "dropbox_fax":
        return Finding(
            "callbacks",
            PROBLEM,
            "http.public_url is not set, so the provider has no address to post its events "
            "to: outcomes come only by polling",
            "set http.public_url to the address where the provider reaches this faxgate, "
            "then run `faxgate account --register-callbacks`",
        )
    expected = event_callback_url(settings, token) if token else None
    if expected is None or actual != expected:
        got = _shown(actual, token or "") if actual else "nowhere (no URL set)"
        return Finding(
            "callbacks",
            PROBLEM,
            f"the account's events go {got}, not to this faxgate",
            "run `faxgate account --register-callbacks`",
        )
    return Finding(
        "callbacks",
        OK,
        f"the account posts its events to this faxgate ({_shown(expected, token or '')})",
    )


async def _check_lines(provider: FaxProvider, settings: Settings) -> list[Finding]:
    try:
        lines = [line.number for line in await provider.list_fax_lines()]
    except ProviderError as exc:
        return [
            Finding(
                "fax lines",
                PROBLEM,
                f"the provider did not list the account's lines: {exc.message}",
                "try again in a few minutes; `faxgate lines` shows the same list",
            )
        ]
    if not lines:
        return [
            Finding(
                "fax lines",
                PROBLEM,
                "the account has no fax line: faxes are sent from one and received on one",
                "find an area code with numbers free (`faxgate areacodes STATE`), then "
                "`faxgate lines buy AREA_CODE`",
            )
        ]
    shown = ", ".join(_pretty(line) for line in lines)
    found = [Finding("fax lines", OK, f"the account has {count(len(lines), 'line')}: {shown}")]
    named = [("smtp.default_line", settings.smtp.default_line)] + [
        (f"smtp.sender_lines {key!r}", line) for key, line in settings.smtp.sender_lines.items()
    ]
    for setting, line in named:
        if line and line not in lines:
            found.append(
                Finding(
                    "fax lines",
                    PROBLEM,
                    f"{setting} is {_pretty(line)}, which is not one of the account's lines",
                    f"use one of the account's lines ({shown}), or buy that line",
                )
            )
    return found


def _pretty(digits: str) -> str:
    number = from_provider_digits(digits)
    return number.display() if number else digits
