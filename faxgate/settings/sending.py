"""The settings of the way out: the provider, the sandbox, numbers, HTTP, sending, polling."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from faxgate.hellofax import sandbox_defaults

if TYPE_CHECKING:
    from faxgate.domain.jobs import RetryPolicy
    from faxgate.domain.numbers import NumberPolicy

from faxgate.settings.fields import (
    Duration,
    Listen,
    ListenAddress,
    PositiveDuration,
    _Section,
    country_codes,
)

ProviderApi = Literal["hellofax", "dropbox_fax"]


class ProviderSettings(_Section):
    """Who sends the faxes: the built-in sandbox, HelloFax v1 or the Dropbox Fax API v3."""

    kind: Literal["sandbox", "hellofax", "dropbox_fax"] = "sandbox"
    base_url: str = ""
    # HelloFax v1: the account and its HTTP basic credentials.
    account_guid: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    # The Dropbox Fax API v3: the API key (HTTP basic user name, empty password); it also
    # verifies the provider's callbacks. test_mode: nothing dialled or billed.
    api_key: SecretStr = SecretStr("")
    test_mode: bool = False
    timeout: float = Field(default=30.0, gt=0, le=600)
    # HelloFax removes a fax once it is sent, so absence from its list proves nothing.
    # True only for a provider that keeps them (a sandbox run with removal = "nothing").
    keeps_sent_faxes: bool = False
    # The provider's callback retry schedule (15 min, 45 min, ... after a failed one) as a
    # multiple of HelloFax's; only an outside sandbox run faster needs it. The built-in
    # sandbox's speed is used for it.
    callback_retry_scale: float = Field(default=1.0, gt=0, le=1)

    @field_validator("account_guid")
    @classmethod
    def _guid_shape(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9a-f]{40}", value):
            raise ValueError("an account GUID is 40 lowercase hexadecimal characters")
        return value

    @field_validator("base_url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not value:
            return value
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("expected an http:// or https:// URL")
        if url.username or url.password:
            raise ValueError("put credentials in username and password, not in the URL")
        return value.rstrip("/")


class SandboxSettings(_Section):
    """The built-in sandbox that `faxgate run` starts when kind = sandbox."""

    listen: Listen = ListenAddress("127.0.0.1", 8090)
    # Which provider's API it speaks: "hellofax" (v1) or "dropbox_fax" (v3).
    api: ProviderApi = "hellofax"
    speed: str = "quick"
    # Which ended faxes it removes, as HelloFax does with sent ones: "sent" (the provider's
    # stated behaviour), "sent_and_failed", or "nothing" (every fax stays readable).
    removal: Literal["sent", "sent_and_failed", "nothing"] = "sent"
    # v3: the provider's rate limit counts requests in a window of this length (100 a
    # minute, 10 in test mode); tests shorten it. faxgate's own client keeps to it too.
    rate_window: PositiveDuration = timedelta(seconds=60)

    @field_validator("speed")
    @classmethod
    def _speed_name(cls, value: str) -> str:
        sandbox_defaults.resolve_speed(value)  # refuses what it cannot read
        return value


class NumberSettings(_Section):
    """How fax numbers are read and which are allowed."""

    default_region: str = "US"
    allow_premium: bool = False
    allow_shared_cost: bool = False
    allowed_countries: list[str] = Field(default_factory=list)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError('expected a two-letter country code such as "US" or "GB"')
        return value.upper()

    @field_validator("allowed_countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        return country_codes(value)

    def policy(self) -> NumberPolicy:
        from faxgate.domain.numbers import NumberPolicy  # phonenumbers: only when numbers are read

        return NumberPolicy(
            default_region=self.default_region,
            allow_premium=self.allow_premium,
            allow_shared_cost=self.allow_shared_cost,
            allowed_countries=frozenset(self.allowed_countries),
        )


class HttpSettings(_Section):
    """faxgate's own HTTP server: provider callbacks, health and metrics."""

    listen: Listen = ListenAddress("127.0.0.1", 8025)
    # How the provider reaches this server, e.g. "https://fax.example.com"; the callback
    # URLs are built from it. Empty: the listen address (enough for the sandbox).
    public_url: str = ""
    # The secret path segment of the callback URLs. Empty: one is made on first start and
    # kept in the state directory.
    callback_token: SecretStr = SecretStr("")
    # Bodies larger than this are refused (413); an inbound fax carries its document.
    max_callback_size: int = Field(default=50 * 1024 * 1024, ge=64 * 1024)
    # Who may see the status pages (see faxgate/web/guard.py); one is needed when
    # `listen` is not loopback. A password for HTTP Basic (itself, best from the
    # environment or a credential, or its hash), or a header a reverse proxy sets.
    status_user: str = Field(default="faxgate", min_length=1, pattern=r"^[^:]+$")
    status_password: SecretStr = SecretStr("")
    status_trust_header: str = Field(default="", pattern=r"^[A-Za-z0-9-]*$")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if value and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("expected an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("callback_token")
    @classmethod
    def _token_strength(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if token and (len(token) < 16 or not re.fullmatch(r"[A-Za-z0-9_-]+", token)):
            raise ValueError("use at least 16 letters, digits, '-' or '_'")
        return value

    @field_validator("status_password")
    @classmethod
    def _status_password(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            return value
        from faxgate.domain.passwords import SCHEME, parse_hash  # only when one is set

        if value.get_secret_value().startswith(f"{SCHEME}$"):
            parse_hash(value.get_secret_value())  # its message never quotes the value
        return value

    @model_validator(mode="after")
    def _status_guarded(self) -> HttpSettings:
        if is_loopback(self.listen.host):
            return self
        if not self.status_password.get_secret_value() and not self.status_trust_header:
            raise ValueError(
                f"listen = {str(self.listen)!r} is not loopback, so the status pages need"
                " status_password (FAXGATE_HTTP__STATUS_PASSWORD or the credential"
                " http.status_password) or status_trust_header, set by a reverse proxy"
            )
        return self


def is_loopback(host: str) -> bool:
    """Whether a listen host reaches only this machine; a name other than localhost is
    taken as reaching further."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DispatchSettings(_Section):
    """Submitting faxes to the provider."""

    # The provider takes at most 200 transmissions pending or transmitting.
    max_in_flight: int = Field(default=200, ge=1, le=200)
    # Waits after a connection error or a provider fault: doubling from first to max.
    backoff_first: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=10)
    # A request whose answer was lost may show in the provider's list this long after it
    # left; only after that may a fax the list does not show be sent again.
    reconcile_window: Duration = timedelta(minutes=10)


class RetrySettings(_Section):
    """Calling again when the line was busy or no one answered."""

    busy_retries: int = Field(default=3, ge=0, le=20)
    busy_delay: Duration = timedelta(minutes=5)
    no_answer_retries: int = Field(default=1, ge=0, le=20)
    no_answer_delay: Duration = timedelta(minutes=10)

    def policy(self) -> RetryPolicy:
        from faxgate.domain.jobs import (
            RetryPolicy,
            RetryRule,
        )  # the job rules: not for `config check`

        return RetryPolicy(
            busy=RetryRule(extra_tries=self.busy_retries, delay=self.busy_delay),
            no_answer=RetryRule(extra_tries=self.no_answer_retries, delay=self.no_answer_delay),
        )


class PollingSettings(_Section):
    """Asking the provider about faxes whose callback has not come."""

    # How often the poller wakes up to look for jobs due a poll.
    tick: Duration = timedelta(seconds=15)
    # The first poll of a fax after it was submitted, growing to max_interval.
    first_interval: Duration = timedelta(seconds=30)
    max_interval: Duration = timedelta(minutes=15)
    # With callbacks set up (the built-in sandbox, or http.public_url), a fax is first
    # polled this long after it was submitted instead: its callback usually comes first.
    callback_grace: Duration = timedelta(minutes=2)
    # Above this many due jobs, one cycle reads the transmission list page by page
    # instead of each transmission on its own.
    list_threshold: int = Field(default=10, ge=1)
    page_size: int = Field(default=100, ge=1, le=100)
