"""The [store] section: where faxgate keeps its jobs."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import SecretStr, field_validator

from faxgate.settings.fields import Duration, _Section


class StoreSettings(_Section):
    """SQLite in the state directory (url empty), or a PostgreSQL database that several
    faxgate instances share (url = "postgresql://faxgate@db.example.org/faxgate")."""

    url: str = ""
    # The database's password: FAXGATE_STORE__PASSWORD or the systemd credential
    # store.password (libpq's PGPASSWORD and ~/.pgpass work too). Never in the URL.
    password: SecretStr = SecretStr("")
    # On PostgreSQL: how long an instance's claim on work (a fax being sent, a poll, a
    # notification) holds without word from it. A live instance renews its claims well
    # before; one that dies loses them this long after its last word, to another.
    lease: Duration = timedelta(minutes=2)

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

    @field_validator("lease")
    @classmethod
    def _lease_long_enough(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("a lease shorter than 1s would be lost between two renewals")
        return value

    @property
    def postgres(self) -> bool:
        return bool(self.url)
