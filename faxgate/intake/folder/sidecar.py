"""The sidecar: a small JSON file beside a dropped document that says where it goes.

    {"to": ["+14155550100"], "from": "+14155550199", "cover_to": "Legal",
     "cover_from": "Front desk", "message": "Please sign.", "notify": "me@example.com"}

"to" may be one number or a list (one fax per number). "files" (optional) makes it a
sidecar for several documents sent as one fax, in that order: {"to": ..., "files":
["letter.pdf", "annex.pdf"]}; its own name is then free. Pure: parsing and checking only.
"""

from __future__ import annotations

import json
import re
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from faxgate.domain.documents import MAX_FILES
from faxgate.domain.numbers import FaxNumber, NumberPolicy, NumberRefused, parse_fax_number
from faxgate.intake.folder.naming import is_plain_name

MAX_SIDECAR_BYTES: Final = 64 * 1024
MAX_NUMBERS: Final = 50
_ADDRESS: Final = re.compile(r"[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


class SidecarError(ValueError):
    """A sidecar that cannot be used; the message says why, in plain words."""


class Sidecar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    to: list[str] = Field(min_length=1, max_length=MAX_NUMBERS)
    from_: str | None = Field(default=None, alias="from")
    cover_to: str | None = Field(default=None, max_length=200)
    cover_from: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=4000)
    notify: str | None = None
    files: list[str] | None = Field(default=None, min_length=1, max_length=MAX_FILES)
    # Urgent faxes go before normal ones, bulk ones last (docs/sending-policy.md).
    priority: Literal["urgent", "normal", "bulk"] = "normal"

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        # A number written as a JSON number (14155550100) is read as its digits.
        items = value if isinstance(value, list) else [value]
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in items]

    @field_validator("notify")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not _ADDRESS.fullmatch(value.strip()):
            raise ValueError("give one plain email address, such as you@example.com")
        return None if value is None else value.strip()

    @field_validator("files")
    @classmethod
    def _plain_names(cls, value: list[str] | None) -> list[str] | None:
        for name in value or ():
            if not is_plain_name(name) or name in ("..", "."):
                raise ValueError(
                    f"{name!r} is not a file beside the sidecar; give plain names, no folders"
                )
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a file is listed twice")
        return value


def parse_sidecar(data: bytes) -> Sidecar:
    """The sidecar in `data`, or SidecarError saying what is wrong with it."""
    if len(data) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"the sidecar is larger than {MAX_SIDECAR_BYTES // 1024} KB")
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise SidecarError("the sidecar is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SidecarError(
            f"the sidecar is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(raw, dict):
        raise SidecarError('the sidecar must be a JSON object, such as {"to": ["+14155550100"]}')
    try:
        return Sidecar.model_validate(raw)
    except ValidationError as exc:
        raise SidecarError(_describe(exc)) from None


def sidecar_numbers(sidecar: Sidecar, policy: NumberPolicy) -> tuple[FaxNumber, ...]:
    """The numbers to fax, each checked against the policy; SidecarError names a bad one."""
    numbers: list[FaxNumber] = []
    for text in sidecar.to:
        try:
            number = parse_fax_number(text, policy)
        except NumberRefused as refused:
            raise SidecarError(f'"to" {text!r}: {refused.reason}') from None
        if number not in numbers:
            numbers.append(number)
    return tuple(numbers)


def sidecar_from_line(sidecar: Sidecar, policy: NumberPolicy) -> str | None:
    """The sending line as the provider writes it ("14155550199"), or None."""
    if not sidecar.from_:
        return None
    # One of the account's own lines: any kind of number may be one.
    lenient = NumberPolicy(
        default_region=policy.default_region, allow_premium=True, allow_shared_cost=True
    )
    try:
        return parse_fax_number(sidecar.from_, lenient).provider_digits
    except NumberRefused as refused:
        raise SidecarError(f'"from" {sidecar.from_!r}: {refused.reason}') from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        key = ".".join(str(part) for part in item["loc"]) or "the sidecar"
        if item["type"] == "extra_forbidden":
            known = '"to", "from", "cover_to", "cover_from", "message", "notify", "files"'
            problems.append(f'"{key}" is not a sidecar key (known: {known})')
        elif item["type"] == "missing":
            problems.append(f'"{key}" is missing: say which number(s) to fax')
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f'"{key}": {message}')
    return "; ".join(problems)
