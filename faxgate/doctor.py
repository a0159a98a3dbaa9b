"""Can this faxgate work with its account, from this machine? What `faxgate doctor` says.

Each check gives a Finding: in order, a problem with its fix, or skipped because what it
needs failed first. The checks:

- the provider: it answers and accepts the credentials (the account is read);
- the callback URLs the account posts to, against those faxgate expects (built as
  `faxgate account --register-callbacks` builds them: faxgate.web.callbacks);
- the fax lines: the account has one, and the lines the settings name are its own;
- http.public_url: a request to its /healthz through the public address reaches faxgate
  (from this machine: it proves DNS, TLS and the reverse proxy; a firewall that lets this
  machine in but not the internet is not seen);
- this machine, with faxgate.preflight's checks: whether a faxgate runs with this state
  directory, each listen address free (or held by that faxgate), the folders writable,
  the store usable, the settings that only mean something here.

Nothing is changed at the provider. On this machine it does what a start does first:
missing folders are made and each is probed with a file written and removed.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx

from faxgate import preflight
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

State = Literal["ok", "problem", "skipped"]
OK: Final = "ok"
PROBLEM: Final = "problem"
SKIPPED: Final = "skipped"

PUBLIC_TIMEOUT: Final = 10.0  # seconds for the request through the public address
_CALLBACK_TOKEN_SEGMENT: Final = re.compile(r"/callbacks/([^/]+)/")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # what was looked at: "provider", "callbacks", "fax lines", ...
    state: State
    detail: str  # in plain words, never a secret
    fix: str | None = None  # what to do, for a problem

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "state": self.state, "detail": self.detail, "fix": self.fix}


def problems(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.state == PROBLEM]


async def examine(settings: Settings) -> list[Finding]:
    """Every check, in the order they are shown."""
    found: list[Finding] = []
    if settings.provider_api == "dropbox_fax":
        found += await _check_v3(settings)
    else:
        async with open_client(settings) as client:
            account = await _check_account(client, settings, found)
            if account is None:
                why = "not checked: the provider did not answer about the account (see above)"
                found += [Finding("callbacks", SKIPPED, why), Finding("fax lines", SKIPPED, why)]
            else:
                found.append(_check_callbacks(settings, account))
                found += await _check_lines(HelloFaxProvider(client), settings)
    found.append(await _check_public_url(settings))
    found += await asyncio.to_thread(_check_this_machine, settings)
    return found


# ---------------------------------------------------------------------------- provider


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
    found = [Finding("fax lines", OK, f"the account has {_count(len(lines), 'line')}: {shown}")]
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


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# ---------------------------------------------------------------------------- public address


async def _check_public_url(settings: Settings) -> Finding:
    public = settings.http.public_url
    if not public:
        why = "http.public_url is not set"
        if settings.provider.kind == "sandbox":
            why += " (a local sandbox reaches faxgate at http.listen)"
        return Finding("public URL", SKIPPED, why)
    url = f"{public}/healthz"
    forward = (
        f"make the reverse proxy forward {public} to faxgate's http.listen "
        f"({settings.http.listen}), and check that faxgate is running"
    )
    try:
        async with httpx.AsyncClient(timeout=PUBLIC_TIMEOUT, follow_redirects=False) as http:
            answer = await http.get(url)
    except httpx.HTTPError as exc:
        host = urlsplit(public).hostname
        return Finding(
            "public URL",
            PROBLEM,
            f"{url} does not answer: {str(exc) or type(exc).__name__}",
            f"check that {host} resolves to this faxgate's reverse proxy, that its "
            f"certificate is valid and the firewall lets the provider in; {forward}",
        )
    if answer.is_redirect:
        return Finding(
            "public URL",
            PROBLEM,
            f"{url} answers with a redirect to {answer.headers.get('location', '?')}: the "
            "provider's callbacks are POSTs, which are not reliably followed across one",
            "set http.public_url to the address the redirect leads to",
        )
    report = _health_report(answer)
    if report is None:
        return Finding(
            "public URL", PROBLEM, f"{url} answers {answer.status_code}, not faxgate", forward
        )
    if report.get("status") == "ok":
        return Finding("public URL", OK, f"{url} answers: faxgate, healthy")
    said = "; ".join(str(problem) for problem in report.get("problems", [])) or "no reason given"
    return Finding(
        "public URL",
        PROBLEM,
        f"{url} answers, but faxgate reports problems: {said}",
        "see faxgate's log (journalctl -u faxgate) and `faxgate status`",
    )


def _health_report(answer: httpx.Response) -> dict[str, Any] | None:
    """faxgate's /healthz body (200 healthy, 503 not), or None for anything else."""
    if answer.status_code not in (200, 503):
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("status") in ("ok", "unhealthy"):
        return body
    return None


# ---------------------------------------------------------------------------- this machine


def _check_this_machine(settings: Settings) -> list[Finding]:
    """faxgate.preflight's checks, one finding each (blocking IO: run in a thread)."""
    found = _folders(settings)
    running = preflight.another_faxgate(settings.state_dir) is not None
    state_dir = settings.state_dir
    found.append(
        Finding(
            "daemon",
            OK,
            f"a faxgate is running with the state directory {state_dir}"
            if running
            else f"no faxgate is running with the state directory {state_dir}",
        )
    )
    found += _ports(settings, running=running)
    found.append(_store(settings))
    found += [
        Finding(
            "settings",
            PROBLEM,
            problem,
            "change the setting it names (config/faxgate.example.toml explains each)",
        )
        for problem in preflight.settings_problems(settings)
    ]
    return found


def _folders(settings: Settings) -> list[Finding]:
    trouble = preflight.folder_problems(settings)
    if not trouble:
        others = len(settings.folders) + len(_inbound_folders(settings))
        also = f", and the {_count(others, 'other folder')} it writes in" if others else ""
        return [
            Finding(
                "folders",
                OK,
                f"faxgate can write in its state directory {settings.state_dir}{also}",
            )
        ]
    fix = (
        "give the user faxgate runs as write access (under systemd, list folders outside "
        "/var/lib/faxgate in ReadWritePaths=), or point the setting at another folder"
    )
    return [Finding("folders", PROBLEM, problem, fix) for problem in trouble]


def _inbound_folders(settings: Settings) -> set[str]:
    inbound = settings.inbound
    return {f for f in [inbound.default_folder, *(r.folder for r in inbound.routes)] if f}


def _ports(settings: Settings, *, running: bool) -> list[Finding]:
    found = []
    for what, key, address in preflight.listeners(settings):
        if address.port == 0:
            found.append(Finding("port", OK, f"{what} ({key}) takes any free port"))
            continue
        problem = preflight.listen_problem(address)
        if problem is None:
            found.append(Finding("port", OK, f"{what} ({key}): {address} is free"))
        elif problem == preflight.PORT_IN_USE and running:
            found.append(
                Finding("port", OK, f"{what} ({key}): {address} is held by the running faxgate")
            )
        elif problem == preflight.PORT_IN_USE:
            found.append(
                Finding(
                    "port",
                    PROBLEM,
                    f"{what} cannot listen on {address}: another program listens there",
                    f"stop that program (`ss -ltnp 'sport = :{address.port}'` names it), or "
                    f"set {key} to a free port",
                )
            )
        else:
            found.append(
                Finding(
                    "port",
                    PROBLEM,
                    f"{what} cannot listen on {address}: {problem}",
                    f"set {key} to an address of this machine and a port it may use",
                )
            )
    return found


def _store(settings: Settings) -> Finding:
    if settings.store.url:
        return _postgres_store(settings)
    path = settings.database_path
    problem = preflight.store_problem(path)
    if problem is None:
        if path.exists():
            return Finding("store", OK, f"the store {path} can be read and written")
        return Finding("store", OK, f"the store {path} is made at the first start")
    fix = (
        "give the user faxgate runs as read and write access to it; if it is damaged, "
        "restore the last backup (docs/operations.md, Backups); one from a newer faxgate "
        "needs that version"
    )
    return Finding("store", PROBLEM, problem, fix)


def _postgres_store(settings: Settings) -> Finding:
    """A PostgreSQL store: the database answers, and its schema is one this faxgate knows;
    and nothing beside it that cannot yet be shared."""
    where = settings.store.url
    problem = preflight.postgres_store_problem(settings)
    if problem is not None:
        if "newer faxgate" in problem:
            fix = "upgrade faxgate to the version of the other instances sharing the store"
        else:
            fix = (
                "start PostgreSQL, or correct store.url; the password goes in"
                " FAXGATE_STORE__PASSWORD or the credential store.password (docs/postgresql.md)"
            )
        return Finding("store", PROBLEM, problem, fix)
    not_shared = preflight.not_shared_yet(settings)
    if not_shared is not None:
        return Finding(
            "store", PROBLEM, not_shared, "turn imap.enabled off, or leave store.url empty"
        )
    return Finding(
        "store", OK, f"the PostgreSQL store {where} answers, with a schema this faxgate knows"
    )
