"""SQLite rows as the sandbox's records."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Any, TypeVar

from faxgate.sandbox.records import CoverPage, FileRecord, Step, TransmissionRecord

T = TypeVar("T")


def from_row(cls: type[T], row: sqlite3.Row, **overrides: Any) -> T:
    """A record whose fields are the row's columns of the same names, but for `overrides`."""
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    values = {name: row[name] for name in names if name not in overrides}
    return cls(**values, **overrides)


def plan_to_json(plan: tuple[Step, ...]) -> str:
    return json.dumps([[step.status, step.error_code, step.after] for step in plan])


def _plan_from_json(text: str) -> tuple[Step, ...]:
    return tuple(
        Step(status, error_code, float(after)) for status, error_code, after in json.loads(text)
    )


def transmission_from_row(row: sqlite3.Row, files: tuple[FileRecord, ...]) -> TransmissionRecord:
    return from_row(
        TransmissionRecord,
        row,
        to=row["to_number"],
        from_=row["from_number"],
        is_inbound=bool(row["is_inbound"]),
        cover=CoverPage(row["cover_to"], row["cover_from"], row["cover_message"]),
        plan=_plan_from_json(row["plan"]),
        files=files,
        test_mode=bool(row["test_mode"]),
    )


def file_from_row(row: sqlite3.Row) -> FileRecord:
    return from_row(FileRecord, row, readable=bool(row["readable"]))
