"""The store's tests run on both backends: SQLite and a real PostgreSQL server."""

from tests.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]
