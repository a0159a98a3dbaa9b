"""The [retention] section: how long faxed and received documents are kept."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from faxgate.settings.fields import (
    PositiveDuration,
    _format_duration,
    _parse_duration,
    _Section,
)

# The one spelling of "keep forever".
FOREVER = "off"


def _parse_keep(value: object) -> timedelta | None:
    """Days ("90d"), any duration the other fields take ("36h"), or "off": kept forever."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else ""
    if text == FOREVER:
        return None
    if match := re.fullmatch(r"(\d+)d", text):
        keep = timedelta(days=int(match[1]))
    else:
        try:
            keep = _parse_duration(value)
        except ValueError:
            raise ValueError(
                'expected a duration such as "90d" or "36h", or "off" (kept forever)'
            ) from None
    if keep <= timedelta(0):
        raise ValueError('a duration longer than 0, or "off" to keep documents forever')
    return keep


def _format_keep(value: timedelta | None) -> str:
    if value is None:
        return FOREVER
    if value.total_seconds() % 86400 == 0:
        return f"{value.days}d"
    return _format_duration(value)


Keep = Annotated[
    timedelta | None,
    BeforeValidator(_parse_keep),
    PlainSerializer(_format_keep, return_type=str),
]


class RetentionSettings(_Section):
    """Documents are removed once they are no longer needed and this old; the job's row,
    its events and its notifications stay (docs/operations.md, "Retention")."""

    # How long the documents of a finished job (its files, a mail's .eml) and of a
    # delivered inbound fax are kept after the job ended or the fax arrived: "90d",
    # "36h", or "off" to keep them forever.
    documents: Keep = timedelta(days=90)
    # How often the daemon looks for documents to remove.
    interval: PositiveDuration = timedelta(hours=1)
