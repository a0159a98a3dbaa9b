"""Conversions between Python values and the store's columns, and rows to values."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

from faxgate.domain.inbound import InboundDelivery, InboundFax, ReceivedDocument
from faxgate.domain.jobs import (
    Document,
    Event,
    Intake,
    Job,
    JobState,
    Notification,
)
from faxgate.store.dialect import Cursor, Row
from faxgate.store.values import NewNotification, StoreError

# ------------------------------------------------------------------ conversions


def time_to_db(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime given to the store: {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_from_db(text: str | datetime) -> datetime:
    """SQLite's text, or the datetime PostgreSQL's timestamptz reads as."""
    value = text if isinstance(text, datetime) else datetime.fromisoformat(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def opt_time_from_db(text: str | datetime | None) -> datetime | None:
    return None if text is None else time_from_db(text)


def json_to_db(value: Mapping[str, Any]) -> str:
    text = json.dumps(dict(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    try:
        text.encode()
    except UnicodeEncodeError:
        # A file name that is not UTF-8 (its bytes kept as surrogates), which neither database can
        # store as text: escaped, it reads back as the same name.
        return json.dumps(dict(value), ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return text


def json_from_db(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def opt_time(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    return time_to_db(value)


def opt_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"expected text, got {type(value).__name__}")


def opt_int(value: object) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def integer(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, got {value!r}")


def count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise TypeError(f"expected a positive integer, got {value!r}")


def opt_interval(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, timedelta):
        raise TypeError(f"expected a timedelta, got {type(value).__name__}")
    return value.total_seconds()


# The job columns a caller may set; the others belong to the store or never change.
_SETTABLE: Final[Mapping[str, Callable[[object], object]]] = {
    "attempt": count,
    "not_before": opt_time,
    "provider_guid": opt_text,
    "provider_status": opt_text,
    "provider_error": opt_text,
    "pages": opt_int,
    "reason": opt_text,
    "next_poll_at": opt_time,
    "poll_interval": opt_interval,
    "submitted_at": opt_time,
    "finished_at": opt_time,
    "reply_to": opt_text,
    "priority": integer,
    "wait_kind": opt_text,
    "wait_reason": opt_text,
}


def settable(fields: Mapping[str, object]) -> dict[str, object]:
    unknown = sorted(set(fields) - set(_SETTABLE))
    if unknown:
        raise ValueError(f"not a job field that can be set: {', '.join(unknown)}")
    return {name: _SETTABLE[name](value) for name, value in fields.items()}


_T = TypeVar("_T")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(field.name for field in fields(cls) if field.init)
    return names


def _opt_state_from_db(value: str | None) -> JobState | None:
    return None if value is None else JobState(value)


def _opt_interval_from_db(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


# The columns read as something other than what the database gives, by name: a name means
# the same kind of value in every table (the reading side of _SETTABLE).
_READ: Final[Mapping[str, Callable[[Any], object]]] = {
    "created_at": time_from_db,
    "updated_at": time_from_db,
    "received_at": time_from_db,
    "at": time_from_db,
    "not_before": opt_time_from_db,
    "next_poll_at": opt_time_from_db,
    "submitted_at": opt_time_from_db,
    "finished_at": opt_time_from_db,
    "next_attempt_at": opt_time_from_db,
    "delivered_at": opt_time_from_db,
    "arrived_at": opt_time_from_db,
    "removed_at": opt_time_from_db,
    "state": JobState,
    "to_state": JobState,
    "from_state": _opt_state_from_db,
    "intake": Intake,
    "intake_ref": json_from_db,
    "data": json_from_db,
    "payload": json_from_db,
    "poll_interval": _opt_interval_from_db,
    "path": Path,
}


def from_row(cls: type[_T], row: Row, **given: object) -> _T:
    """A dataclass from a row: each field from the column of its name, read as _READ says,
    but for the fields given here."""
    values = dict(given)
    for name in _field_names(cls):
        if name not in given:
            read = _READ.get(name)
            values[name] = row[name] if read is None else read(row[name])
    return cls(**values)


def job_from_row(row: Row) -> Job:
    return from_row(Job, row)


def document_from_row(row: Row) -> Document:
    return from_row(Document, row)


def event_from_row(row: Row) -> Event:
    return from_row(Event, row)


def notification_from_row(row: Row) -> Notification:
    return from_row(Notification, row)


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


def require_row(cursor: Cursor, notification_id: int) -> None:
    if cursor.rowcount != 1:
        raise StoreError(f"no notification {notification_id}")


def expected_states(expect: JobState | Iterable[JobState] | None) -> frozenset[JobState] | None:
    if expect is None:
        return None
    if isinstance(expect, str):  # a JobState is a str: do not iterate its letters
        return frozenset({JobState(expect)})
    return frozenset(JobState(s) for s in expect)


def as_notification(
    notify: Mapping[str, Any] | NewNotification | None, job_id: str
) -> NewNotification | None:
    if notify is None:
        return None
    if isinstance(notify, NewNotification):
        return NewNotification(
            kind=notify.kind,
            payload=notify.payload,
            job_id=job_id,
            next_attempt_at=notify.next_attempt_at,
        )
    return NewNotification(payload=notify, job_id=job_id)


# ------------------------------------------------------------------ inbound rows


def inbound_fax_from_row(row: Row) -> InboundFax:
    document = None
    if row["document_path"] is not None:
        document = ReceivedDocument(
            path=Path(row["document_path"]),
            size=row["document_size"],
            sha256=row["document_sha256"],
            content_type=row["content_type"],
        )
    return from_row(
        InboundFax, row, document=document, transaction=json_from_db(row["transaction_json"])
    )


def inbound_delivery_from_row(row: Row) -> InboundDelivery:
    pending_in_outbox = row["outbox_id"] is not None and row["outbox_delivered_at"] is None
    return from_row(
        InboundDelivery,
        row,
        attempts=row["attempts"] or 0,
        given_up=pending_in_outbox and row["next_attempt_at"] is None,
    )
