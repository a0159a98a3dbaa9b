"""The store: SQLite in WAL mode (or PostgreSQL, shared by several instances), the one
place a job, its events, the outbox and the inbound faxes are kept; documents on disk in
the spool beside it."""

from faxgate.store.facade import Store
from faxgate.store.imap_taken import TakenElsewhere, TakenMessage
from faxgate.store.migrations import MIGRATIONS, apply_migrations, schema_version
from faxgate.store.sharing import Holder, Member, Share, gone_after, new_owner
from faxgate.store.values import (
    DEFAULT_BUSY_TIMEOUT,
    DocumentsRemoved,
    JobNotFound,
    Lease,
    NewDocument,
    NewJob,
    NewNotification,
    SchemaTooNew,
    StaleState,
    StoreError,
    UnmatchedReport,
)

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MIGRATIONS",
    "DocumentsRemoved",
    "Holder",
    "JobNotFound",
    "Lease",
    "Member",
    "NewDocument",
    "NewJob",
    "NewNotification",
    "SchemaTooNew",
    "Share",
    "StaleState",
    "Store",
    "StoreError",
    "TakenElsewhere",
    "TakenMessage",
    "UnmatchedReport",
    "apply_migrations",
    "gone_after",
    "new_owner",
    "schema_version",
]
