"""Dependencies point one way: the rule, written as a table, checked on every import.

Each part of faxgate (a top-level module or package) may import only the parts its row
names, besides itself and the standard library; a part that is not in the table fails
the test too, so a new one is placed on purpose. Imports inside functions count alike
(the CLI's lazy ones included): the rule is about what a part knows, not when it loads.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import faxgate

ROOT: Final = Path(faxgate.__file__).parent

PLUMBING: Final = frozenset(
    {"clock", "durable", "config_error", "logs", "systemd", "runner", "workers"}
)
BELOW_THE_PARTS: Final = frozenset({"domain", "metrics", "settings", *PLUMBING})

# part -> the parts it may import. Lower rows never name higher ones.
MAY_IMPORT: Final[dict[str, frozenset[str]]] = {
    "domain": frozenset(),
    "clock": frozenset(),
    "durable": frozenset(),
    "config_error": frozenset(),
    "logs": frozenset(),
    "systemd": frozenset(),
    "runner": frozenset(),
    "workers": frozenset(),
    "metrics": frozenset({"domain"}),
    "settings": frozenset({"domain", "config_error", "hellofax.sandbox_defaults"}),
    "setup_warnings": frozenset({"settings"}),
    "store": frozenset({"domain", "clock", "durable"}),
    "sandbox": BELOW_THE_PARTS | {"hellofax.sandbox_defaults"},
    "hellofax": BELOW_THE_PARTS | {"sandbox"},
    "dropbox_fax": frozenset({"domain", "clock", "hellofax.errors", "hellofax.http", "sandbox"})
    | {"hellofax.sandbox_defaults"},
    "providers": BELOW_THE_PARTS | {"hellofax", "dropbox_fax"},
    "intake": BELOW_THE_PARTS | {"store"},
    "inbound": BELOW_THE_PARTS | {"store", "hellofax.models"},
    "sending": BELOW_THE_PARTS | {"store"},
    "notify": BELOW_THE_PARTS | {"store", "intake", "inbound"},
    "web": BELOW_THE_PARTS | {"store", "hellofax", "dropbox_fax", "sending", "inbound"},
    "preflight": BELOW_THE_PARTS | {"store", "intake", "inbound"},
    "doctor": BELOW_THE_PARTS | {"hellofax", "dropbox_fax", "providers", "web", "preflight"},
    "reload": BELOW_THE_PARTS | {"intake", "inbound"},
    "demo": BELOW_THE_PARTS,
    "instances": BELOW_THE_PARTS | {"store"},
    "retention": BELOW_THE_PARTS | {"store"},
    "app": BELOW_THE_PARTS
    | {"store", "hellofax", "dropbox_fax", "providers", "sandbox", "intake", "inbound"}
    | {"sending", "notify", "web"}
    | {"preflight", "reload", "setup_warnings", "instances", "retention"},
    "cli": BELOW_THE_PARTS
    | {"store", "hellofax", "dropbox_fax", "providers", "intake", "inbound", "web", "app"}
    | {"doctor", "reload"}
    | {"setup_warnings", "demo", "sandbox"},
    "__main__": frozenset({"cli"}),
}


def part_of(module: str) -> str:
    """faxgate.intake.smtp.handler -> intake."""
    return module.split(".")[1]


def allows(importer: str, imported: str) -> bool:
    """May the module `importer` import the module `imported` (both dotted, faxgate.*)?"""
    if imported == "faxgate":
        return True  # the package itself: its __version__
    mine, theirs = part_of(importer), part_of(imported)
    if mine == theirs:
        return True
    inside = imported.removeprefix("faxgate.")
    return any(inside == rule or inside.startswith(f"{rule}.") for rule in MAY_IMPORT[mine])


def module_name(path: Path) -> str:
    parts = ["faxgate", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every faxgate module this file imports; `from faxgate import
    metrics` counts as faxgate.metrics, `from faxgate.x import name` as faxgate.x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("faxgate")]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "faxgate" or node.module.startswith("faxgate."))
        ):
            # `from package import module` names the module; `from module import name`
            # the module itself.
            found += [(node.lineno, _module_or_parent(node.module, a.name)) for a in node.names]
    return found


def _module_or_parent(module: str, name: str) -> str:
    inside = ROOT.joinpath(*module.split(".")[1:], name)
    if inside.with_suffix(".py").is_file() or (inside / "__init__.py").is_file():
        return f"{module}.{name}"
    return module


def violations() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        importer = module_name(path)
        if importer == "faxgate":
            continue
        if part_of(importer) not in MAY_IMPORT:
            found.append(f"{importer}: a part the table does not place")
            continue
        for line, imported in imports_of(path):
            if not allows(importer, imported):
                where = path.relative_to(ROOT.parent)
                found.append(f"{where}:{line}: {importer} imports {imported}")
    return found


def test_every_import_points_down() -> None:
    found = violations()
    assert not found, "imports against the layout:\n" + "\n".join(found)


def test_the_domain_imports_nothing_else_of_faxgate() -> None:
    assert MAY_IMPORT["domain"] == frozenset()
    assert not allows("faxgate.domain.reconcile", "faxgate.hellofax.models")


def test_an_upward_import_is_named() -> None:
    assert not allows("faxgate.store.jobs", "faxgate.intake.queue")
    assert not allows("faxgate.settings", "faxgate.intake.smtp.auth")
    assert allows("faxgate.settings", "faxgate.hellofax.sandbox_defaults")
    assert not allows("faxgate.settings", "faxgate.hellofax.sandbox")


def test_every_row_names_only_parts_that_exist() -> None:
    parts = {p.stem if p.is_file() else p.name for p in ROOT.iterdir() if p.name != "__pycache__"}
    named = {rule.split(".")[0] for rules in MAY_IMPORT.values() for rule in rules}
    assert named <= parts, sorted(named - parts)
    assert set(MAY_IMPORT) <= parts, sorted(set(MAY_IMPORT) - parts)
