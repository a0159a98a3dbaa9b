"""What a check found: one line of `faxgate doctor`'s answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

State = Literal["ok", "problem", "skipped"]
OK: Final = "ok"
PROBLEM: Final = "problem"
SKIPPED: Final = "skipped"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # what was looked at: "provider", "callbacks", "fax lines", ...
    state: State
    detail: str  # in plain words, never a secret
    fix: str | None = None  # what to do, for a problem

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "state": self.state, "detail": self.detail, "fix": self.fix}


def problems(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.state == PROBLEM]


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
