"""The description's own examples and test fixtures (see fixtures/SOURCES.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

# The key the description's examples and the SDKs' tests sign their events with.
EXAMPLE_API_KEY = "324e3b0840f065eb51f3fd63231d0d33daa35d4ed10d27718839e81737065782"


def example_text(name: str) -> str:
    """An `examples/json/` file as it is published, trailing commas and all."""
    return (FIXTURES / "examples" / "json" / name).read_text(encoding="utf-8")


def fixture_case(name: str, case: str = "default") -> Any:
    """One named case of a `test_fixtures/` file."""
    cases = json.loads((FIXTURES / "test_fixtures" / name).read_text(encoding="utf-8"))
    return cases[case]


def without_trailing_commas(text: str) -> str:
    """The text with each comma before a closing bracket removed (the examples have no
    commas inside strings, so this cannot change a value)."""
    return re.sub(r",(\s*[}\]])", r"\1", text)
