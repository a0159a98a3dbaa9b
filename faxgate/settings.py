"""Settings: a TOML file, overridden by FAXGATE_* variables and systemd credentials.

Where the file comes from, in order: an explicit path (``--config``), ``$FAXGATE_CONFIG``,
``./config/faxgate.toml`` when present, else built-in defaults that run on the sandbox.
Sources, strongest first: environment (``FAXGATE_PROVIDER__BASE_URL``), credential files
(``$CREDENTIALS_DIRECTORY/provider.password``), the TOML file, the defaults.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from faxgate.config_error import ConfigError as ConfigError  # re-exported for callers
from faxgate.domain.inbound_routes import check_address, check_pattern_syntax
from faxgate.domain.jobs import RetryPolicy, RetryRule
from faxgate.domain.passwords import BadPasswordHash, parse_hash
from faxgate.hellofax import sandbox_defaults

if TYPE_CHECKING:
    from faxgate.domain.numbers import NumberPolicy

DEFAULT_CONFIG_PATH = Path("config/faxgate.toml")
HELLOFAX_BASE_URL = "https://api.hellofax.com/v1"


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
    """The built-in HelloFax-compatible sandbox that `faxgate run` starts when kind = sandbox."""

    listen: Listen = ListenAddress("127.0.0.1", 8090)
    speed: str = "quick"
    # Which ended faxes it removes, as HelloFax does with sent ones: "sent" (the provider's
    # stated behaviour), "sent_and_failed", or "nothing" (every fax stays readable).
    removal: Literal["sent", "sent_and_failed", "nothing"] = "sent"

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
        from faxgate.domain.numbers import NumberPolicy  # phonenumbers: only when numbers are read

        return NumberPolicy(
            default_region=self.default_region,
            allow_premium=self.allow_premium,
            allow_shared_cost=self.allow_shared_cost,
            allowed_countries=frozenset(self.allowed_countries),
        )


class SmtpSettings(_Section):
    """The email-to-fax listener (see docs/email.md)."""

    listen: Listen = ListenAddress("127.0.0.1", 2525)
    # The name faxgate gives in its greeting; empty: this host's name.
    hostname: str = ""
    # Mail to NUMBER@<one of these> is faxed to NUMBER; case does not matter.
    domains: list[str] = Field(default_factory=lambda: ["fax.local"], min_length=1)
    # Fax recipients one message may have.
    max_recipients: int = Field(default=10, ge=1, le=100)
    # Larger messages are refused (552); advertised with SIZE.
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=64 * 1024, le=1024**3)
    # Faxes one sender (or logged-in user) may send per day, counted from midnight UTC;
    # 0: no limit.
    daily_limit: int = Field(default=0, ge=0)
    # Who may send without logging in: addresses, "@domain", or patterns ("*@*.example.com").
    allowed_senders: list[str] = Field(default_factory=list)
    # Who may log in (AUTH PLAIN or LOGIN, offered only after STARTTLS) and then send from
    # any address: name = "scrypt$..." as `faxgate smtp hash-password` prints it.
    users: dict[str, SecretStr] = Field(default_factory=dict)
    # STARTTLS: PEM certificate (chain) and key files.
    tls_cert: str = ""
    tls_key: str = ""
    # Refuse mail until the client has started TLS.
    require_tls: bool = False
    # A client silent this long is disconnected (a whole message must come within it).
    idle_timeout: Duration = timedelta(minutes=10)
    # Connections at once, in all and from one address (Postfix opens up to 20 to one
    # destination): past either, a new one is told 421 and closed.
    max_connections: int = Field(default=100, ge=1)
    max_connections_per_client: int = Field(default=50, ge=1)
    # Processes that read messages (MIME parsing is CPU work kept off the event loop);
    # 0: a thread of the daemon instead.
    reader_processes: int = Field(default=2, ge=0, le=32)
    # The provider's cover page: "always", "when_body" (a message with text beside its
    # attachments) or "never". A header "X-Fax-Cover: no" turns it off for one message.
    cover: Literal["always", "when_body", "never"] = "when_body"
    # The line faxes are sent from (provider digits, e.g. "14155550100"): a sender's own
    # (keyed by address, "@domain" or user name), else default_line, else the account's
    # primary line.
    default_line: str = ""
    sender_lines: dict[str, str] = Field(default_factory=dict)
    # Attach the sent document to the reply (off: faxes often carry health data).
    attach_document: bool = False
    # Guessing passwords: after 5 failed logins from one address, each further attempt
    # waits this long, twice as long each time (at most 30 s); 0: no wait.
    auth_failure_delay: Duration = timedelta(seconds=1)
    # This many failed logins from one address within auth_failure_window, and its AUTH
    # is refused (421) until the oldest of them is that old; 0: never.
    auth_max_failures: int = Field(default=20, ge=0)
    auth_failure_window: Duration = timedelta(minutes=15)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        cleaned = [domain.strip().lower().rstrip(".") for domain in value]
        for domain in cleaned:
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain):
                raise ValueError('expected domain names such as ["fax.example.com"]')
        return cleaned

    @field_validator("allowed_senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        cleaned = [entry.strip().lower() for entry in value]
        if any("@" not in entry or " " in entry for entry in cleaned):
            raise ValueError('expected addresses, "@domain" or patterns such as "*@example.com"')
        return cleaned

    @field_validator("users")
    @classmethod
    def _users(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, stored in value.items():
            if not name or name != name.strip():
                raise ValueError("a user name cannot be empty or start or end with a blank")
            try:
                parse_hash(stored.get_secret_value())
            except BadPasswordHash as exc:
                raise ValueError(f"user {name!r}: {exc}") from None
        return value

    @field_validator("default_line")
    @classmethod
    def _default_line(cls, value: str) -> str:
        return _line_digits(value) if value else value

    @field_validator("sender_lines")
    @classmethod
    def _sender_lines(cls, value: dict[str, str]) -> dict[str, str]:
        return {key.strip().lower(): _line_digits(line) for key, line in value.items()}

    @model_validator(mode="after")
    def _tls_complete(self) -> SmtpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if not self.tls_cert and self.require_tls:
            raise ValueError("require_tls needs tls_cert and tls_key")
        if not self.tls_cert and self.users:
            raise ValueError("users need tls_cert and tls_key: AUTH is offered only after STARTTLS")
        return self


def _line_digits(value: str) -> str:
    digits = value.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{5,14}", digits):
        raise ValueError('a line is given as the provider writes it, e.g. "14155550100"')
    return digits


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
    # With callbacks set up (the built-in sandbox, or http.public_url), a fax is first
    # polled this long after it was submitted instead: its callback usually comes first.
    callback_grace: Duration = timedelta(minutes=2)
    # Above this many due jobs, one cycle reads the transmission list page by page
    # instead of each transmission on its own.
    list_threshold: int = Field(default=10, ge=1)
    page_size: int = Field(default=100, ge=1, le=100)


class AddressingSettings(_Section):
    """Ways to address a fax besides NUMBER@<fax domain> (see docs/email.md)."""

    # Shared addresses whose mail is faxed to the numbers its subject starts with:
    # ["fax@company.com"] and "Subject: Fax to +1 415 555 0100: the contract".
    subject_addresses: list[str] = Field(default_factory=list)
    # Shared addresses that take the number after a delimiter: fax+14155550100@company.com.
    plus_addresses: list[str] = Field(default_factory=list)
    # Postfix's recipient_delimiter must let it through (the same character, or none).
    plus_delimiter: str = "+"
    # A contacts file, TOML or CSV by its ending: NAME@<fax domain> faxes a contact or every
    # number of a group. Read again on SIGHUP.
    contacts_file: str = ""
    # A group with more numbers than this is refused.
    max_group_size: int = Field(default=20, ge=1, le=1000)

    @field_validator("subject_addresses", "plus_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        cleaned = [entry.strip().lower() for entry in value]
        for entry in cleaned:
            local, at, domain = entry.rpartition("@")
            if not at or not local or "." not in domain or " " in entry:
                raise ValueError('expected whole addresses such as ["fax@example.com"]')
        return cleaned

    @field_validator("plus_delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if len(value) != 1 or value not in "+-_=.":
            raise ValueError('expected one of "+", "-", "_", "=", "."')
        return value

    @field_validator("contacts_file")
    @classmethod
    def _contacts_file(cls, value: str) -> str:
        if value and Path(value).suffix.lower() not in (".toml", ".csv"):
            raise ValueError("a contacts file is a .toml or a .csv file")
        return value


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


def _one_or_many(value: object) -> object:
    """`to = "+1 415 555 0100"` reads as a list of one."""
    return [value] if isinstance(value, str) else value


def _inbound_folder(value: str) -> str:
    if value and not Path(value).is_absolute():
        raise ValueError("give the folder as an absolute path, e.g. /srv/fax/in")
    return value


class InboundRouteSettings(_Section):
    """One rule for inbound faxes: the lines and senders it applies to, where they go."""

    name: str = ""
    # Numbers or patterns ("+1415555*"); a rule that leaves one out applies to any.
    to: list[str] = Field(default_factory=list)
    from_: list[str] = Field(default_factory=list, alias="from")
    email: list[str] = Field(default_factory=list)
    folder: str = ""

    @field_validator("to", "from_", "email", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("to", "from_")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [check_pattern_syntax(text) for text in value]

    @field_validator("email")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [check_address(text) for text in value]

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return _inbound_folder(value)

    @model_validator(mode="after")
    def _goes_somewhere(self) -> InboundRouteSettings:
        if not self.email and not self.folder:
            raise ValueError("a route needs email recipients, a folder, or both")
        return self

    @model_serializer(mode="wrap")
    def _from_as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data["from"] = data.pop("from_")  # the key as the file writes it
        return data


class InboundSettings(_Section):
    """Faxes received on the account's lines: where each goes (see docs/inbound.md)."""

    # Tried in order; the first rule matching the line (to) and sender (from) wins.
    routes: list[InboundRouteSettings] = Field(default_factory=list)
    # Where a fax no rule matches goes. Both empty: nowhere; it is kept and listed by
    # `faxgate inbox`.
    default_email: list[str] = Field(default_factory=list)
    default_folder: str = ""

    @field_validator("default_email", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("default_email")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [check_address(text) for text in value]

    @field_validator("default_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        return _inbound_folder(value)


class FolderSettings(_Section):
    """One hot folder: files dropped into `path` become faxes (see docs/hotfolder.md)."""

    path: Path
    # "inotify": the kernel tells faxgate of each file as it is closed (local disks, and
    # shares this machine serves). "poll": the folder is listed every poll_interval; for
    # SMB or NFS shares mounted here, where inotify sees nothing.
    mode: Literal["inotify", "poll"] = "inotify"
    poll_interval: Duration = timedelta(seconds=2)
    # A file found by listing the folder (poll mode, at start, at a rescan) is taken once
    # its size and time have not changed for this long.
    stable_for: Duration = timedelta(seconds=3)
    # inotify mode: list the folder this often too, for anything the events missed.
    rescan_interval: Duration = timedelta(minutes=1)
    # A file whose name holds no number waits this long for its sidecar, then is refused.
    sidecar_wait: Duration = timedelta(seconds=10)
    # Where files go when done; relative paths are inside the folder (and never taken).
    sent_dir: Path = Path("sent")
    failed_dir: Path = Path("failed")
    processing_dir: Path = Path("processing")
    # Keep sent/ and failed/ in one subfolder per day (sent/2024-05-01/).
    date_subfolders: bool = False
    # Larger files are refused (bytes); the provider takes at most 30 MB per fax.
    max_file_size: int = Field(default=30 * 1024 * 1024, ge=1)
    # Cover page and report address for files whose sidecar does not say.
    cover_to: str = ""
    cover_from: str = ""
    cover_message: str = ""
    notify: str = ""

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str) -> str:
        return check_address(value) if value else value

    @model_validator(mode="after")
    def _result_dirs_apart(self) -> FolderSettings:
        folder = Path(os.path.normpath(self.path.absolute()))
        dirs = [Path(os.path.normpath(folder / d)) for d in self.result_dirs()]
        if folder in dirs:
            raise ValueError("sent_dir, failed_dir and processing_dir must not be the folder")
        if len(set(dirs)) != len(dirs):
            raise ValueError("sent_dir, failed_dir and processing_dir must differ")
        return self

    def result_dirs(self) -> tuple[Path, Path, Path]:
        """(sent, failed, processing), relative ones taken inside the folder."""
        return (
            self.path / self.sent_dir,
            self.path / self.failed_dir,
            self.path / self.processing_dir,
        )


def _distinct_folders(value: object) -> object:
    if isinstance(value, list):
        paths = [
            item.get("path") if isinstance(item, dict) else getattr(item, "path", None)
            for item in value
        ]
        seen = [os.path.normpath(os.path.abspath(p)) for p in paths if isinstance(p, str | Path)]
        if len(set(seen)) != len(seen):
            raise ValueError("each hot folder may be listed only once")
    return value


Folders = Annotated[list[FolderSettings], BeforeValidator(_distinct_folders)]


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
    folders: Folders = Field(default_factory=list)
    inbound: InboundSettings = InboundSettings()
    addressing: AddressingSettings = AddressingSettings()

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

    @property
    def builtin_sandbox(self) -> bool:
        """`faxgate run` starts the sandbox itself."""
        return self.provider.kind == "sandbox" and not self.provider.base_url

    @property
    def provider_removes_sent(self) -> bool:
        """Whether the provider may remove a fax once it is sent (see reconcile.py)."""
        if self.provider.keeps_sent_faxes:
            return False
        return not (self.builtin_sandbox and self.sandbox.removal == "nothing")

    @property
    def callback_retry_scale(self) -> float:
        """How fast the provider retries callbacks, as a multiple of HelloFax's schedule."""
        if self.builtin_sandbox:
            return sandbox_defaults.resolve_speed(self.sandbox.speed)
        return self.provider.callback_retry_scale

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


ENV_PREFIX = "FAXGATE_"
# FAXGATE_* variables that are not settings themselves.
OTHER_ENV_NAMES = frozenset({"FAXGATE_CONFIG"})


def environment_names() -> set[str]:
    """Every FAXGATE_* name that sets something: a top-level setting or SECTION__KEY."""
    names = set(OTHER_ENV_NAMES)
    for name, field in Settings.model_fields.items():
        names.add(f"{ENV_PREFIX}{name.upper()}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for key, inner in section.model_fields.items():
                names.add(f"{ENV_PREFIX}{name.upper()}__{(inner.alias or key).upper()}")
    return names


def _check_environment(environ: Mapping[str, str]) -> None:
    """Refuse FAXGATE_* variables that name no setting, as the TOML file refuses unknown
    keys: a mistyped override would otherwise change nothing without a word."""
    known = environment_names()
    problems = []
    for variable in sorted(environ):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        # Deeper names set one entry of a table setting, e.g. FAXGATE_SMTP__USERS__SCANNER.
        if name.count("__") > 1 and name.rsplit("__", 1)[0] in known:
            continue
        # Matched without the prefix they share, which would make any name look close.
        keys = {known_name.removeprefix(ENV_PREFIX): known_name for known_name in known}
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), keys, n=1, cutoff=0.7)
        hint = f"; did you mean {keys[close[0]]}?" if close else ""
        problems.append(f"  {variable}: names no setting{hint}")
    if problems:
        raise ConfigError("unknown FAXGATE_* variables:\n" + "\n".join(problems))


def load_settings(config: str | Path | None = None) -> Settings:
    """Build the effective settings or raise ConfigError with a message fit for a user."""
    _check_environment(os.environ)
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
