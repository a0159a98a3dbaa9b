"""Settings: a TOML file, overridden by FAXGATE_* variables and systemd credentials.

Where the file comes from, in order: an explicit path (``--config``), ``$FAXGATE_CONFIG``,
``./config/faxgate.toml`` when present, else built-in defaults that run on the sandbox.
Sources, strongest first: environment (``FAXGATE_PROVIDER__BASE_URL``), credential files
(``$CREDENTIALS_DIRECTORY/provider.password``), the TOML file, the defaults.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from faxgate.domain.jobs import RetryPolicy, RetryRule
from faxgate.domain.numbers import NumberPolicy
from faxgate.hellofax.sandbox import settings as sandbox_defaults

DEFAULT_CONFIG_PATH = Path("config/faxgate.toml")
HELLOFAX_BASE_URL = "https://api.hellofax.com/v1"


class ConfigError(Exception):
    """The settings cannot be used; the message names the key and never its value."""


class ListenAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


_LISTEN_RE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def _parse_listen(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError('expected "host:port", for example "127.0.0.1:2525"')
    match = _LISTEN_RE.match(value.strip())
    if not match:
        raise ValueError('expected "host:port", for example "127.0.0.1:2525" or "[::1]:2525"')
    port = int(match["port"])
    if not 0 <= port <= 65535:
        raise ValueError("the port must be between 0 and 65535")
    return ListenAddress(match["v6"] or match["host"], port)


Listen = Annotated[
    ListenAddress,
    NoDecode,  # "host:port" is plain text, not JSON, also in FAXGATE_* variables
    BeforeValidator(_parse_listen),
    PlainSerializer(str, return_type=str),
]


_DURATION_RE = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def _parse_duration(value: object) -> timedelta:
    """Seconds as a number, or text like "90s", "5m", "1h30m"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value.strip())) and value.strip():
        hours, minutes, secs = (float(match[k] or 0) for k in ("h", "m", "s"))
        seconds = hours * 3600 + minutes * 60 + secs
    else:
        raise ValueError('expected a duration such as 30, "90s", "5m" or "1h30m"')
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


def _format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - int(seconds)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if secs or fraction or not text:
        text += f"{secs + fraction:g}s"
    return text


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    PlainSerializer(_format_duration, return_type=str),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ProviderSettings(_Section):
    """Who sends the faxes: the built-in sandbox or the real HelloFax API."""

    kind: Literal["sandbox", "hellofax"] = "sandbox"
    base_url: str = ""
    account_guid: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    timeout: float = Field(default=30.0, gt=0, le=600)

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
    """The built-in HelloFax-compatible sandbox that `faxgate run` starts when kind = sandbox."""

    listen: Listen = ListenAddress("127.0.0.1", 8090)
    speed: str = "quick"

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
        for code in value:
            if not re.fullmatch(r"[A-Za-z]{2}", code):
                raise ValueError('expected two-letter country codes such as ["US", "CA"]')
        return [code.upper() for code in value]

    def policy(self) -> NumberPolicy:
        return NumberPolicy(
            default_region=self.default_region,
            allow_premium=self.allow_premium,
            allow_shared_cost=self.allow_shared_cost,
            allowed_countries=frozenset(self.allowed_countries),
        )


class SmtpSettings(_Section):
    """The email-to-fax listener."""

    listen: Listen = ListenAddress("127.0.0.1", 2525)


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
    # Above this many due jobs, one cycle reads the transmission list page by page
    # instead of each transmission on its own.
    list_threshold: int = Field(default=10, ge=1)
    page_size: int = Field(default=100, ge=1, le=100)


class MailSettings(_Section):
    """Outgoing mail: replies to senders, reports, inbound faxes."""

    from_address: str = "faxgate@localhost"
    # "host:port" of an SMTP relay; empty: mail is written to a Maildir under state_dir.
    relay: str = ""
    starttls: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str) -> str:
        if value:
            _parse_listen(value)
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FAXGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    state_dir: Path = Path("./var")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    provider: ProviderSettings = ProviderSettings()
    sandbox: SandboxSettings = SandboxSettings()
    numbers: NumberSettings = NumberSettings()
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    dispatch: DispatchSettings = DispatchSettings()
    retry: RetrySettings = RetrySettings()
    polling: PollingSettings = PollingSettings()
    mail: MailSettings = MailSettings()

    # Set by load_settings(); a class-level slot so pydantic leaves it alone.
    _source_file: Path | None = None

    @model_validator(mode="after")
    def _provider_complete(self) -> Settings:
        p = self.provider
        if p.kind == "hellofax":
            missing = [
                f"provider.{name}"
                for name, value in (
                    ("account_guid", p.account_guid),
                    ("username", p.username),
                    ("password", p.password.get_secret_value()),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"kind = hellofax needs {', '.join(missing)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init_settings carries the TOML file and the credentials, merged by load_settings.
        return (env_settings, init_settings)

    # Derived values: the rest of faxgate asks these, not the raw fields.

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    @property
    def database_path(self) -> Path:
        return self.state_dir / "faxgate.sqlite3"

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "spool"

    @property
    def maildir(self) -> Path:
        return self.state_dir / "maildir"

    @property
    def callback_token_path(self) -> Path:
        return self.state_dir / "callback-token"

    @property
    def sandbox_state_dir(self) -> Path:
        return self.state_dir / "sandbox"

    def provider_base_url(self) -> str:
        if self.provider.base_url:
            return self.provider.base_url
        if self.provider.kind == "sandbox":
            return f"http://{self.sandbox.listen}/v1"
        return HELLOFAX_BASE_URL

    def provider_credentials(self) -> tuple[str, str, str]:
        """(account GUID, username, password), with the sandbox's identity as fallback."""
        p = self.provider
        if p.kind == "sandbox":
            return (
                p.account_guid or sandbox_defaults.DEFAULT_ACCOUNT_GUID,
                p.username or sandbox_defaults.DEFAULT_USERNAME,
                p.password.get_secret_value() or sandbox_defaults.DEFAULT_PASSWORD,
            )
        return p.account_guid, p.username, p.password.get_secret_value()


# Secret settings a systemd credential (LoadCredential=NAME:...) may provide; the file name
# is the setting's dotted path.
CREDENTIAL_KEYS: tuple[tuple[str, str], ...] = (
    ("provider", "password"),
    ("http", "callback_token"),
    ("mail", "password"),
)


def resolve_config_path(explicit: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read, or None for built-in defaults. A named file must exist."""
    if explicit is not None:
        path = Path(explicit)
        origin = "--config"
    elif environ.get("FAXGATE_CONFIG"):
        path = Path(environ["FAXGATE_CONFIG"])
        origin = "FAXGATE_CONFIG"
    else:
        return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None
    if not path.is_file():
        raise ConfigError(f"config file {path} (from {origin}) does not exist")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message holds a position, never the text itself.
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _read_credentials(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    found: dict[str, dict[str, str]] = {}
    if not directory:
        return found
    for section, key in CREDENTIAL_KEYS:
        path = Path(directory) / f"{section}.{key}"
        try:
            value = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(f"cannot read credential {path.name}: {exc.strerror}") from None
        found.setdefault(section, {})[key] = value
    return found


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, where: str) -> str:
    """One line per problem, naming the key; input values are left out (secrets)."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        key = ".".join(str(part) for part in item["loc"]) or "(settings)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"  {key}: {message}")
    return f"invalid settings in {where}:\n" + "\n".join(lines)


def load_settings(config: str | Path | None = None) -> Settings:
    """Build the effective settings or raise ConfigError with a message fit for a user."""
    path = resolve_config_path(config, os.environ)
    data = _read_toml(path) if path else {}
    data = _merge(data, _read_credentials(os.environ))
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        where = f"{path} or FAXGATE_* variables" if path else "FAXGATE_* variables"
        raise ConfigError(_describe(exc, where)) from None
    except ValueError as exc:
        # Raised by pydantic-settings for unparsable JSON in complex env values.
        raise ConfigError(f"invalid settings in FAXGATE_* variables: {exc}") from None
    settings._source_file = path
    return settings


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as plain data, with every secret masked."""
    data: dict[str, Any] = json.loads(settings.model_dump_json())
    for section, key in CREDENTIAL_KEYS:
        value = getattr(getattr(settings, section), key)
        data[section][key] = "********" if value.get_secret_value() else ""
    return data
