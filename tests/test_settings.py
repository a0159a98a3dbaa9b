"""Settings: where they come from, which wins, and how bad ones are refused."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from faxgate.hellofax.sandbox import DEFAULT_ACCOUNT_GUID as SANDBOX_ACCOUNT_GUID
from faxgate.settings import (
    ConfigError,
    ListenAddress,
    Settings,
    load_settings,
    masked_dump,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "faxgate.example.toml"
GUID = "15da1c48b10c96a903eb1bac3d592fbed24ebc35"


pytestmark = pytest.mark.usefixtures("clean_environment")


def toml_text(data: dict[str, Any]) -> str:
    """A settings file's text (tomllib reads, it does not write): JSON's strings, numbers
    and lists are TOML's too."""
    import json

    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if key != "rules"]
        for rule in values.get("rules", []):
            lines.append(f"[[{section}.rules]]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in rule.items()]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_built_in_defaults_run_on_the_sandbox() -> None:
    settings = load_settings()
    assert settings.source_file is None
    assert settings.provider.kind == "sandbox"
    assert settings.state_dir == Path("var")
    assert settings.smtp.listen == ListenAddress("127.0.0.1", 2525)
    assert settings.http.listen == ListenAddress("127.0.0.1", 8025)
    assert settings.provider_base_url() == "http://127.0.0.1:8090/v1"
    assert settings.provider_credentials()[0] == SANDBOX_ACCOUNT_GUID
    assert settings.database_path == Path("var/faxgate.sqlite3")


def test_the_project_config_file_is_used_when_present(tmp_path: Path) -> None:
    write(tmp_path / "config/faxgate.toml", 'state_dir = "/srv/fax"\n')
    settings = load_settings()
    assert settings.state_dir == Path("/srv/fax")
    assert settings.source_file == Path("config/faxgate.toml")


def test_faxgate_config_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "config/faxgate.toml", 'state_dir = "/ignored"\n')
    chosen = write(tmp_path / "elsewhere.toml", "[smtp]\nlisten = '0.0.0.0:25'\n")
    monkeypatch.setenv("FAXGATE_CONFIG", str(chosen))
    settings = load_settings()
    assert settings.smtp.listen == ListenAddress("0.0.0.0", 25)
    assert settings.state_dir == Path("var")


def test_explicit_path_beats_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_CONFIG", str(write(tmp_path / "a.toml", "log_level = 'error'\n")))
    settings = load_settings(write(tmp_path / "b.toml", "log_level = 'debug'\n"))
    assert settings.log_level == "debug"


@pytest.mark.parametrize("origin", ["--config", "FAXGATE_CONFIG"])
def test_a_named_file_that_does_not_exist_is_an_error(
    origin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if origin == "FAXGATE_CONFIG":
        monkeypatch.setenv("FAXGATE_CONFIG", "/nonexistent/faxgate.toml")
        config = None
    else:
        config = "/nonexistent/faxgate.toml"
    with pytest.raises(ConfigError, match=rf"/nonexistent/faxgate.toml \(from {origin}\)"):
        load_settings(config)


def test_environment_beats_credentials_beats_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "f.toml",
        f"""
        [provider]
        kind = "hellofax"
        account_guid = "{GUID}"
        username = "me@example.com"
        password = "from-file"
        timeout = 12
        """,
    )
    credentials = tmp_path / "creds"
    write(credentials / "provider.password", "from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert load_settings(config).provider.password.get_secret_value() == "from-credential"

    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", "from-env")
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("FAXGATE_SMTP__LISTEN", "127.0.0.1:2626")
    settings = load_settings(config)
    assert settings.provider.password.get_secret_value() == "from-env"
    assert settings.provider.timeout == 12  # the rest of the section still comes from the file
    assert settings.provider_base_url() == "http://127.0.0.1:9/v1"
    assert settings.smtp.listen.port == 2626


def test_hellofax_needs_an_account(tmp_path: Path) -> None:
    config = write(tmp_path / "f.toml", '[provider]\nkind = "hellofax"\nusername = "me@x.org"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "provider.account_guid" in str(caught.value)
    assert "provider.password" in str(caught.value)


def test_dropbox_fax_needs_an_api_key(tmp_path: Path) -> None:
    config = write(tmp_path / "f.toml", '[provider]\nkind = "dropbox_fax"\n')
    with pytest.raises(ConfigError, match=r"provider\.api_key"):
        load_settings(config)


def test_v1_moves_to_v3_by_its_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = load_settings()
    assert (v1.provider_api, v1.provider_base_url()) == ("hellofax", "http://127.0.0.1:8090/v1")

    monkeypatch.setenv("FAXGATE_SANDBOX__API", "dropbox_fax")
    sandbox_v3 = load_settings()
    assert (sandbox_v3.provider_api, sandbox_v3.provider_base_url()) == (
        "dropbox_fax",
        "http://127.0.0.1:8090/v3",
    )
    assert sandbox_v3.provider_api_key()  # the sandbox's own key, no account needed

    config = write(tmp_path / "v3.toml", '[provider]\nkind = "dropbox_fax"\ntest_mode = true\n')
    credentials = tmp_path / "creds"
    write(credentials / "provider.api_key", "key-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    real = load_settings(config)
    assert (real.provider_api, real.provider_base_url()) == (
        "dropbox_fax",
        "https://api.hellosign.com/v3",
    )
    assert real.provider_api_key() == "key-from-credential"
    assert real.provider.test_mode is True
    monkeypatch.setenv("FAXGATE_PROVIDER__API_KEY", "key-from-env")
    assert load_settings(config).provider_api_key() == "key-from-env"
    assert masked_dump(load_settings(config))["provider"]["api_key"] == "********"


def test_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    config = write(tmp_path / "f.toml", "colour = 'red'\n[provider]\nbase_ulr = 'http://x'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "colour: unknown setting" in message
    assert "provider.base_ulr: unknown setting" in message


def test_unknown_environment_variables_are_refused_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "hunter2-do-not-print"
    monkeypatch.setenv("FAXGATE_SMTP__LISTN", "127.0.0.1:2626")
    monkeypatch.setenv("FAXGATE_PROVIDR__PASSWORD", secret)
    monkeypatch.setenv("FAXGATE_NOTHING_LIKE_IT", "1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert lines[1:] == [
        "  FAXGATE_NOTHING_LIKE_IT: names no setting",
        "  FAXGATE_PROVIDR__PASSWORD: names no setting; did you mean FAXGATE_PROVIDER__PASSWORD?",
        "  FAXGATE_SMTP__LISTN: names no setting; did you mean FAXGATE_SMTP__LISTEN?",
    ]
    assert secret not in str(caught.value)


def test_every_real_environment_name_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any case, as pydantic-settings reads them; a table setting's entries by name.
    monkeypatch.setenv("faxgate_smtp__listen", "127.0.0.1:2626")
    monkeypatch.setenv("FAXGATE_STATE_DIR", "elsewhere")
    monkeypatch.setenv("FAXGATE_MAIL__PASSWORD", "secret")
    monkeypatch.setenv("FAXGATE_SMTP__SENDER_LINES__ME@X.ORG", "14155550100")
    settings = load_settings()
    assert settings.smtp.listen == ListenAddress("127.0.0.1", 2626)
    assert settings.state_dir == Path("elsewhere")
    assert settings.smtp.sender_lines == {"me@x.org": "14155550100"}


def test_bad_values_name_the_key_and_never_echo_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hunter2-do-not-print"
    config = write(
        tmp_path / "f.toml",
        f"""
        [provider]
        account_guid = "{secret}"
        password = ["{secret}"]
        [http]
        listen = "{secret}"
        """,
    )
    monkeypatch.setenv("FAXGATE_PROVIDER__TIMEOUT", secret)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert secret not in message
    for key in ("provider.account_guid", "provider.password", "http.listen", "provider.timeout"):
        assert key in message


def test_broken_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    config = write(tmp_path / "f.toml", "[provider\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2525", ListenAddress("127.0.0.1", 2525)),
        ("0.0.0.0:25", ListenAddress("0.0.0.0", 25)),
        ("[::1]:8025", ListenAddress("::1", 8025)),
        ("mail.example.com:587", ListenAddress("mail.example.com", 587)),
    ],
)
def test_listen_addresses(text: str, expected: ListenAddress) -> None:
    address = Settings(smtp={"listen": text}).smtp.listen
    assert address == expected
    assert Settings(smtp={"listen": str(address)}).smtp.listen == expected


@pytest.mark.parametrize("text", ["2525", "localhost", "127.0.0.1:99999", ":25", "a:b"])
def test_bad_listen_addresses(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_SMTP__LISTEN", text)
    with pytest.raises(ConfigError, match=r"smtp\.listen"):
        load_settings()


def test_credentials_in_the_base_url_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__BASE_URL", "https://me:pw@api.hellofax.com/v1")
    with pytest.raises(ConfigError, match=r"provider\.base_url") as caught:
        load_settings()
    assert "pw@" not in str(caught.value)


def test_masked_dump_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_PROVIDER__PASSWORD", "s3cret")
    data = masked_dump(load_settings())
    assert data["provider"]["password"] == "********"
    assert "s3cret" not in repr(data)


def test_the_example_file_lists_every_setting_with_its_default() -> None:
    """config/faxgate.example.toml is the reference: it must match the code."""
    with EXAMPLE.open("rb") as handle:
        example = tomllib.load(handle)
    defaults = masked_dump(Settings())
    # Tables of tables are examples to uncomment: an empty list written out would clash.
    assert _keys(example) == _keys(defaults) - {"folders", "inbound.routes", "policy.rules"}
    assert masked_dump(load_settings(EXAMPLE)) == defaults


def test_the_example_file_works_with_its_examples_uncommented(tmp_path: Path) -> None:
    """Copied as is and each `#   [[...]]` block uncommented, the file loads."""
    lines = EXAMPLE.read_text().splitlines()
    uncommenting = False
    for index, line in enumerate(lines):
        if line.startswith("#   [["):
            uncommenting = True
        elif not line.startswith("#   "):
            uncommenting = False
        if uncommenting:
            lines[index] = line.removeprefix("#   ")
    config = write(tmp_path / "faxgate.toml", "\n".join(lines))
    settings = load_settings(config)
    assert [route.name for route in settings.inbound.routes] == ["sales", "head office"]
    assert [folder.path for folder in settings.folders] == [Path("/srv/fax/outbox")]
    assert [rule.name for rule in settings.policy.rules] == ["practices", "newsletters"]


def _keys(data: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("1h30m", 5400), ("0.5s", 0.5), (45, 45), ("2h", 7200)],
)
def test_durations(text: object, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_RETRY__BUSY_DELAY", str(text))
    settings = load_settings()
    assert settings.retry.busy_delay.total_seconds() == seconds
    assert settings.retry.policy().busy.delay.total_seconds() == seconds
    round_trip = masked_dump(settings)["retry"]["busy_delay"]
    monkeypatch.setenv("FAXGATE_RETRY__BUSY_DELAY", round_trip)
    assert load_settings().retry.busy_delay.total_seconds() == seconds


@pytest.mark.parametrize("text", ["5 minutes", "-5s", "m", "1d"])
def test_bad_durations(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_POLLING__TICK", text)
    with pytest.raises(ConfigError, match=r"polling\.tick"):
        load_settings()


@pytest.mark.parametrize("token", ["short", "has spaces in it here", "x" * 15])
def test_weak_callback_tokens_are_refused(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_HTTP__CALLBACK_TOKEN", token)
    with pytest.raises(ConfigError, match=r"http\.callback_token") as caught:
        load_settings()
    assert token not in str(caught.value)


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"name": "x", "hours": "8-18"}, "HH:MM-HH:MM"),
        ({"name": "x", "hours": "25:00-06:00"}, "real times"),
        ({"name": "x", "hours": "08:00-08:00"}, "same time"),
        ({"name": "x", "hours": "08:00-18:00", "days": []}, "at least one day"),
        ({"name": "x", "numbers": ["212555"]}, "E.164"),
        ({"name": "x", "senders": ["example.com"]}, "@domain"),
        ({"name": "x", "max_pages": 0}, "greater than or equal to 1"),
        ({"name": "x", "priority": "soon"}, "urgent"),
    ],
)
def test_bad_sending_rules_are_refused_plainly(
    rule: dict[str, object], problem: str, tmp_path: Path
) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text(toml_text({"policy": {"rules": [rule]}}))
    with pytest.raises(ConfigError, match=r"policy\.rules") as caught:
        load_settings(config)
    assert problem in str(caught.value)


def test_sending_rules_read_as_the_domain_takes_them(tmp_path: Path) -> None:
    from datetime import time

    config = tmp_path / "faxgate.toml"
    rules = [
        {"name": "night", "countries": ["gb"], "hours": "22:00-06:00", "days": ["fri"]},
        {"name": "late", "hours": "18:00-24:00", "senders": ["@Example.com"], "priority": "bulk"},
    ]
    config.write_text(toml_text({"policy": {"calls_per_number": 0, "rules": rules}}))
    policy = load_settings(config).policy
    night, late = policy.rules_in_order()
    assert night.match.countries == ("GB",)
    assert (night.hours.start, night.hours.end, night.hours.days) == (  # type: ignore[union-attr]
        time(22),
        time(6),
        frozenset({4}),
    )
    assert late.hours is not None
    assert late.hours.end == time(0)  # until midnight
    assert (late.match.senders, late.priority) == (("@example.com",), -1)
    twice = tmp_path / "twice.toml"
    twice.write_text(toml_text({"policy": {"rules": [{"name": "a"}, {"name": "a"}]}}))
    with pytest.raises(ConfigError, match="rule names must differ: a"):
        load_settings(twice)
    zone = tmp_path / "zone.toml"
    zone.write_text(toml_text({"policy": {"unknown_zone": "Mars/Olympus"}}))
    with pytest.raises(ConfigError, match="time zone"):
        load_settings(zone)
