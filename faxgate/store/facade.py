"""The store's one face: every table family over one SQLite file or PostgreSQL database.

Callers see one `Store`; its SQL is split by table family (jobs.py, outbox.py,
unmatched.py, inbound.py) over the connection and group commits of db.py.
"""

from __future__ import annotations

from faxgate.store.inbound import InboundFaxes
from faxgate.store.jobs import JobTables
from faxgate.store.outbox import Outbox
from faxgate.store.unmatched import UnmatchedReports


class Store(JobTables, Outbox, UnmatchedReports, InboundFaxes):
    """Jobs and events, the outbox, unmatched reports and inbound faxes in one database."""
