"""Settings: a TOML file, overridden by FAXGATE_* variables and systemd credentials.

Where the file comes from, in order: an explicit path (``--config``), ``$FAXGATE_CONFIG``,
``./config/faxgate.toml`` when present, else built-in defaults that run on the sandbox.
Sources, strongest first: environment (``FAXGATE_PROVIDER__BASE_URL``), credential files
(``$CREDENTIALS_DIRECTORY/provider.password``), the TOML file, the defaults.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from faxgate.config_error import ConfigError as ConfigError  # re-exported for callers
from faxgate.hellofax import sandbox_defaults
from faxgate.settings.fields import DROPBOX_FAX_BASE_URL, HELLOFAX_BASE_URL, ListenAddress
from faxgate.settings.intake import (
    AddressingSettings,
    Folders,
    FolderSettings,
    ImapSettings,
    InboundSettings,
    MailSettings,
    SmtpSettings,
)
from faxgate.settings.policy import PolicySettings
from faxgate.settings.reports import ReportSettings
from faxgate.settings.retention import RetentionSettings
from faxgate.settings.sending import (
    DispatchSettings,
    HttpSettings,
    NumberSettings,
    PollingSettings,
    ProviderApi,
    ProviderSettings,
    RetrySettings,
    SandboxSettings,
)
from faxgate.settings.store import StoreSettings

__all__ = [
    "ConfigError",
    "DispatchSettings",
    "FolderSettings",
    "HttpSettings",
    "ImapSettings",
    "InboundSettings",
    "ListenAddress",
    "MailSettings",
    "PolicySettings",
    "PollingSettings",
    "ProviderSettings",
    "SandboxSettings",
    "Settings",
    "SmtpSettings",
    "StoreSettings",
    "load_settings",
    "masked_dump",
]

DEFAULT_CONFIG_PATH = Path("config/faxgate.toml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FAXGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    state_dir: Path = Path("./var")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Each section's defaults as written (valid: tests/test_settings_build.py checks), made
    # without validating, which would build every section's own validator at import.
    provider: ProviderSettings = ProviderSettings.model_construct()
    sandbox: SandboxSettings = SandboxSettings.model_construct()
    numbers: NumberSettings = NumberSettings.model_construct()
    smtp: SmtpSettings = SmtpSettings.model_construct()
    http: HttpSettings = HttpSettings.model_construct()
    dispatch: DispatchSettings = DispatchSettings.model_construct()
    retry: RetrySettings = RetrySettings.model_construct()
    polling: PollingSettings = PollingSettings.model_construct()
    mail: MailSettings = MailSettings.model_construct()
    folders: Folders = Field(default_factory=list)
    inbound: InboundSettings = InboundSettings.model_construct()
    addressing: AddressingSettings = AddressingSettings.model_construct()
    imap: ImapSettings = ImapSettings.model_construct()
    reports: ReportSettings = ReportSettings.model_construct()
    store: StoreSettings = StoreSettings.model_construct()
    policy: PolicySettings = PolicySettings.model_construct()
    retention: RetentionSettings = RetentionSettings.model_construct()

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
        if p.kind == "dropbox_fax" and not p.api_key.get_secret_value():
            raise ValueError("kind = dropbox_fax needs provider.api_key")
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

    @property
    def provider_api(self) -> ProviderApi:
        """Which API faxgate speaks: the provider's, or the sandbox's."""
        if self.provider.kind == "sandbox":
            return self.sandbox.api
        return self.provider.kind

    def provider_base_url(self) -> str:
        if self.provider.base_url:
            return self.provider.base_url
        v3 = self.provider_api == "dropbox_fax"
        if self.provider.kind == "sandbox":
            return f"http://{self.sandbox.listen}/{'v3' if v3 else 'v1'}"
        return DROPBOX_FAX_BASE_URL if v3 else HELLOFAX_BASE_URL

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

    def provider_api_key(self) -> str:
        """The v3 API key, with the sandbox's as fallback."""
        key = self.provider.api_key.get_secret_value()
        if self.provider.kind == "sandbox":
            return key or sandbox_defaults.DEFAULT_API_KEY
        return key

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
    ("provider", "api_key"),
    ("http", "callback_token"),
    ("http", "status_password"),
    ("mail", "password"),
    ("imap", "password"),
    ("store", "password"),
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
    import tomllib  # compiles its patterns on import: only when there is a file to read

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
        import difflib  # only for a variable that names no setting

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
