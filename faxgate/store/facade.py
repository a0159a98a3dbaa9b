"""The store's one face: every table family over one SQLite file.

Callers see one `Store`; its SQL is split by table family (jobs.py, outbox.py,
unmatched.py, inbound.py) over the connection and group commits of db.py.
"""

from __future__ import annotations

from faxgate.store.inbound import InboundFaxes
from faxgate.store.jobs import JobTables
from faxgate.store.outbox import Outbox
from faxgate.store.unmatched import UnmatchedReports
from faxgate.store.views import StatusViews


class Store(JobTables, Outbox, UnmatchedReports, InboundFaxes, StatusViews):
    """Jobs and events, the outbox, unmatched reports and inbound faxes in one file."""
