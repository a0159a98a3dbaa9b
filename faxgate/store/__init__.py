"""The store: SQLite in WAL mode, the one place a job, its events, the outbox and the
inbound faxes are kept; documents on disk in the spool beside it."""

from faxgate.store.facade import (
    DEFAULT_BUSY_TIMEOUT,
    MIGRATIONS,
    JobNotFound,
    NewDocument,
    NewJob,
    NewNotification,
    SchemaTooNew,
    StaleState,
    Store,
    StoreError,
    apply_migrations,
    schema_version,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MIGRATIONS",
    "JobNotFound",
    "NewDocument",
    "NewJob",
    "NewNotification",
    "SchemaTooNew",
    "StaleState",
    "Store",
    "StoreError",
    "apply_migrations",
    "schema_version",
]
