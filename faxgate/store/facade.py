"""The store's one face: every table family over one SQLite file or PostgreSQL database.

Callers see one `Store`; its SQL is split by table family (jobs.py and job_reads.py, the
jobs' leases in claims.py, outbox.py, unmatched.py, inbound.py, the IMAP intake's ledger in
imap_taken.py) over the connections and group commits of db.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Self

from faxgate.clock import utc_now
from faxgate.store.claims import JobClaims
from faxgate.store.document_bytes import DocumentBytes
from faxgate.store.imap_taken import ImapLedger
from faxgate.store.inbound import InboundFaxes
from faxgate.store.job_reads import JobReads
from faxgate.store.jobs import JobTables
from faxgate.store.outbox import Outbox
from faxgate.store.retention import Retention
from faxgate.store.sharing import Sharing
from faxgate.store.unmatched import UnmatchedReports
from faxgate.store.views import StatusViews


class Store(
    ImapLedger,
    JobTables,
    JobReads,
    JobClaims,
    Sharing,
    Outbox,
    UnmatchedReports,
    InboundFaxes,
    Retention,
    DocumentBytes,
    StatusViews,
):
    """Jobs and events, the outbox, unmatched reports, inbound faxes and the messages
    taken from a mailbox in one database, and the status pages' views of them."""

    @classmethod
    def open_configured(
        cls,
        url: str,
        password: str,
        path: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        spool_dir: Path | None = None,
    ) -> Self:
        """The store the settings name: [store] url's PostgreSQL database, or (url empty)
        the SQLite file `path` in the state directory. `spool_dir`: where documents kept
        in the database are copied to be read on this host."""
        if not url:
            return cls.open(path, clock=clock)
        store = cls.open_url(url, password=password or None, clock=clock)
        if spool_dir is not None:
            store.cache_documents_in(spool_dir)
        return store
