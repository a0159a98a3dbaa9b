"""[store] url and password: SQLite by default, PostgreSQL when a URL is set, the password
from the environment or a systemd credential and never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from faxgate.settings import ConfigError, load_settings, masked_dump
from faxgate.store import Store, StoreError
from tests.postgres import PASSWORD, PostgresServer


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FAXGATE_STORE__URL", raising=False)
    monkeypatch.delenv("FAXGATE_STORE__PASSWORD", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("FAXGATE_CONFIG", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)


def test_by_default_the_store_is_sqlite_in_the_state_directory(tmp_path: Path) -> None:
    config = write(tmp_path / "f.toml", f'state_dir = "{tmp_path / "state"}"\n')
    settings = load_settings(config)
    assert settings.store.url == ""
    with Store.open_configured(
        settings.store.url, settings.store.password.get_secret_value(), settings.database_path
    ) as store:
        assert store.path == settings.database_path
        assert store.dialect.name == "sqlite"
    assert settings.database_path.is_file()


def test_a_postgresql_url_with_its_password_from_a_credential_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_server: PostgresServer
) -> None:
    url = postgres_server.url()  # over TCP, where the server asks for the password
    config = write(tmp_path / "f.toml", f'[store]\nurl = "{url}"\n')
    credentials = tmp_path / "creds"
    write(credentials / "store.password", PASSWORD + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_settings(config)
    assert settings.store.password.get_secret_value() == PASSWORD
    with Store.open_configured(
        settings.store.url, settings.store.password.get_secret_value(), tmp_path / "unused"
    ) as store:
        assert store.dialect.name == "postgresql"
        assert store.location == url
        assert store.get_job("000000000000") is None
    assert not (tmp_path / "unused").exists()

    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    monkeypatch.setenv("FAXGATE_STORE__PASSWORD", PASSWORD)
    settings = load_settings(config)
    with Store.open_configured(
        settings.store.url, settings.store.password.get_secret_value(), tmp_path / "unused"
    ) as store:
        assert store.schema_version() >= 1


def test_a_wrong_password_is_a_clear_error_that_never_shows_it(
    postgres_server: PostgresServer,
) -> None:
    with pytest.raises(StoreError, match="password authentication failed") as caught:
        Store.open_url(postgres_server.url(), password="not-the-password")
    assert "not-the-password" not in str(caught.value)
    assert postgres_server.url() in str(caught.value)


def test_a_password_in_the_url_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAXGATE_STORE__URL", "postgresql://faxgate:hunter2@db.example.org/fax")
    with pytest.raises(ConfigError, match=r"store\.url: put the password in") as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["mysql://db.example.org/fax", "db.example.org", "sqlite:///var/lib/faxgate.db"]
)
def test_only_postgresql_urls_are_taken(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("FAXGATE_STORE__URL", url)
    with pytest.raises(ConfigError, match=r"store\.url: expected empty"):
        load_settings()


def test_the_store_password_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAXGATE_STORE__PASSWORD", "s3cret")
    data = masked_dump(load_settings())
    assert data["store"]["password"] == "********"
    assert "s3cret" not in repr(data)
