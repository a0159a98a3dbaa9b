"""The [store] section: where faxgate keeps its jobs."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from faxgate.settings.fields import _Section


class StoreSettings(_Section):
    """SQLite in the state directory (url empty), or a PostgreSQL database that several
    faxgate instances share (url = "postgresql://faxgate@db.example.org/faxgate")."""

    url: str = ""
    # The database's password: FAXGATE_STORE__PASSWORD or the systemd credential
    # store.password (libpq's PGPASSWORD and ~/.pgpass work too). Never in the URL.
    password: SecretStr = SecretStr("")

    @field_validator("url")
    @classmethod
    def _url_shape(cls, value: str) -> str:
        if not value:
            return value
        try:
            parts = urlsplit(value)
            password = parts.password
        except ValueError:  # a port that is no number, say; the URL itself is not shown
            raise ValueError("expected a postgresql:// URL") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("expected empty (SQLite in the state directory) or postgresql://")
        if password is not None:
            raise ValueError(
                "put the password in store.password (FAXGATE_STORE__PASSWORD or the"
                " credential store.password), not in the URL"
            )
        return value

    @property
    def postgres(self) -> bool:
        return bool(self.url)
