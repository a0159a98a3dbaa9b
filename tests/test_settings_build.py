"""How the settings' models are built: once, as a whole, with defaults that need no check.

The sections' validators are built only when a section is made on its own (defer_build);
loading the settings builds the whole settings' validator alone. A section's default in
Settings is made without validation, so it must be what validation would make of it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from faxgate.settings import Settings


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: field.annotation
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }


def test_every_section_default_is_what_validation_makes_of_it() -> None:
    sections = _sections()
    assert len(sections) >= 12
    for name, section in sections.items():
        default = Settings.model_fields[name].default
        assert type(default) is section, name
        assert default == section.model_validate({}), name
        assert default.model_dump() == section().model_dump(), name


def test_loading_the_settings_builds_no_section_validator_of_its_own(tmp_path: Path) -> None:
    config = tmp_path / "faxgate.toml"
    config.write_text('[smtp]\nlisten = "127.0.0.1:2727"\n\n[retry]\nbusy_retries = 5\n')
    script = f"""
from pydantic_core import SchemaValidator
from faxgate.settings import Settings, load_settings
settings = load_settings({str(config)!r})
assert settings.smtp.listen.port == 2727 and settings.retry.busy_retries == 5
built = [
    name for name, field in Settings.model_fields.items()
    if isinstance(getattr(field.annotation, "__pydantic_validator__", None), SchemaValidator)
]
print("BUILT", *built)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    assert result.stdout.split() == ["BUILT"], result.stdout
