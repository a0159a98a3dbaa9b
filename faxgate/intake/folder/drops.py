"""Which complete files in one folder make a fax, which are refused, which wait. Pure.

The caller lists the folder, reads the sidecars and the first bytes of the documents that
are complete, and hands over a `FolderView`; `plan` answers with actions:
- `Drop`: documents (with their sidecar) to claim and queue as one fax;
- `Refuse`: files to put in failed/ with the reason;
- `Wait`: a complete file to look at again later (its sidecar is still being written, or
  it has no number yet and a sidecar may still come).
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from faxgate.domain.documents import (
    ACCEPTED_TYPES,
    DocumentRefused,
    accepted_list,
    check_batch,
    check_document,
)
from faxgate.domain.jobs import PRIORITIES
from faxgate.domain.numbers import FaxNumber, NumberPolicy
from faxgate.intake.folder.naming import (
    Found,
    NotFound,
    NumberSource,
    find_number,
    is_ignored,
    is_sidecar,
    naming_help,
    sidecar_names,
)
from faxgate.intake.folder.sidecar import (
    Sidecar,
    SidecarError,
    sidecar_from_line,
    sidecar_numbers,
)

Kind = Literal["file", "symlink", "dir", "other"]


class Refused(StrEnum):
    """Why a file was refused: the label of faxgate_folder_files_refused."""

    NO_NUMBER = "no_number"
    BAD_NUMBER = "bad_number"
    SIDECAR = "sidecar"
    TYPE = "type"
    EMPTY = "empty"
    CONTENT = "content"
    SIZE = "size"
    SYMLINK = "symlink"
    NOT_A_FILE = "not_a_file"
    UNREADABLE = "unreadable"
    OUTSIDE = "outside"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    size: int


@dataclass(frozen=True, slots=True)
class Defaults:
    """The folder's settings that fill in what a sidecar leaves out."""

    policy: NumberPolicy
    max_file_size: int
    sidecar_wait: float
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    notify: str | None = None


@dataclass(frozen=True, slots=True)
class FolderView:
    """One folder (the hot folder, or one of its number sub-folders) as it is now."""

    folder: str  # "" for the hot folder, else the sub-folder's name
    entries: Mapping[str, Entry]  # every name listed
    ready: Mapping[str, float]  # complete files offered now: name -> ready since
    pending: Set[str]  # names known to be still incomplete
    sidecars: Mapping[str, Sidecar | SidecarError]  # read: the ready .json files
    heads: Mapping[str, bytes | None]  # first bytes of the ready documents; None: unreadable


@dataclass(frozen=True, slots=True)
class Drop:
    documents: tuple[str, ...]
    sidecar: str | None
    numbers: tuple[FaxNumber, ...]
    source: NumberSource
    from_line: str | None = None
    cover_to: str | None = None
    cover_from: str | None = None
    cover_message: str | None = None
    notify: str | None = None
    priority: int = 0  # urgent 1, normal 0, bulk -1: the sidecar's


@dataclass(frozen=True, slots=True)
class Refuse:
    names: tuple[str, ...]  # the documents first, then the sidecar
    code: str
    reason: str
    help: str | None = None  # how to name the file, when the number is the trouble


@dataclass(frozen=True, slots=True)
class Wait:
    name: str
    until: float | None  # None: until something else in the folder changes


Action = Drop | Refuse | Wait


@dataclass
class _Plan:
    view: FolderView
    defaults: Defaults
    now: float
    actions: list[Action] = field(default_factory=list)
    done: set[str] = field(default_factory=set)

    def add(self, action: Action, names: tuple[str, ...] = ()) -> None:
        self.actions.append(action)
        self.done.update(names or _names(action))


def plan(view: FolderView, defaults: Defaults, now: float) -> list[Action]:
    """What to do with each ready file of the folder."""
    p = _Plan(view, defaults, now)
    _batches(p)
    for name in sorted(view.ready):
        if name not in p.done and not is_sidecar(name):
            _document(p, name)
    for name in sorted(view.ready):
        if name not in p.done:
            # A sidecar whose document has not come yet. A broken one waits for its
            # document too, for a while, so that both go to failed/ together.
            sidecar = view.sidecars.get(name)
            if not isinstance(sidecar, SidecarError):
                p.add(Wait(name, None))
            elif p.now - view.ready[name] < _patience(p.defaults):
                p.add(Wait(name, view.ready[name] + _patience(p.defaults)))
            else:
                p.add(Refuse((name,), Refused.SIDECAR, str(sidecar)))
    return p.actions


def _batches(p: _Plan) -> None:
    """Sidecars with "files": several documents as one fax."""
    view = p.view
    for name, sidecar in sorted(view.sidecars.items()):
        if not isinstance(sidecar, Sidecar) or sidecar.files is None or name not in view.ready:
            continue
        files = tuple(sidecar.files)
        here = tuple(f for f in files if f in view.entries)
        missing = [f for f in files if f not in view.entries]
        if missing or any(f not in view.ready for f in here):
            # Listed documents are still coming: they and the sidecar wait.
            waited = p.now - view.ready[name]
            if missing and waited >= _patience(p.defaults):
                listed = ", ".join(missing)
                reason = f"the files {listed} listed in {name} never came"
                p.add(Refuse((*here, name), Refused.MISSING, reason))
            else:
                until = _next_look(p, view.ready[name])
                for f in (*here, name):
                    if f in view.ready:
                        p.add(Wait(f, until))
                    else:
                        p.done.add(f)  # not offered now; taken with the batch later
            continue
        problem = _documents_problem(p, files)
        if problem is not None:
            p.add(Refuse((*files, name), *problem))
            continue
        p.add(_drop(files, name, sidecar, p.defaults, NumberSource.SIDECAR))


def _document(p: _Plan, name: str) -> None:
    view = p.view
    problem = _documents_problem(p, (name,))
    own = next(
        (
            s
            for s in sidecar_names(name)
            if s in view.entries and s not in p.done and _owns(view, s, name)
        ),
        None,
    )
    if problem is not None:
        p.add(Refuse((name,) if own is None else (name, own), *problem))
        return
    if own is not None:
        sidecar = view.sidecars.get(own)
        if own not in view.ready or sidecar is None:
            # Its sidecar is still being written; looked at again now and then, in case
            # it is taken away instead.
            p.add(Wait(name, _next_look(p, view.ready[name])))
        elif isinstance(sidecar, SidecarError):
            p.add(Refuse((name, own), Refused.SIDECAR, str(sidecar)))
        else:
            p.add(_drop((name,), own, sidecar, p.defaults, NumberSource.SIDECAR))
        return
    found = find_number(name, view.folder, p.defaults.policy)
    if isinstance(found, Found):
        p.add(_drop((name,), None, None, p.defaults, found.source, found.numbers))
        return
    assert isinstance(found, NotFound)
    waited = p.now - view.ready[name]
    if found.code == Refused.NO_NUMBER.value and waited < p.defaults.sidecar_wait:
        p.add(Wait(name, view.ready[name] + p.defaults.sidecar_wait))
        return
    p.add(Refuse((name,), found.code, found.reason, naming_help(name)))


def _owns(view: FolderView, sidecar: str, document: str) -> bool:
    """Whether `sidecar` is `document`'s own: not when it lists files (it is a batch's);
    "a.pdf.json" always; "a.json" unless several documents are named "a"."""
    read = view.sidecars.get(sidecar)
    if isinstance(read, Sidecar) and read.files is not None:
        return False
    if sidecar == document + ".json":
        return True
    stem = sidecar.removesuffix(".json")
    namesakes = [n for n in view.entries if not is_sidecar(n) and n.rpartition(".")[0] == stem]
    return namesakes == [document]


def _documents_problem(p: _Plan, names: tuple[str, ...]) -> tuple[str, str] | None:
    """(code, reason) when one of the documents cannot be faxed as it is."""
    view = p.view
    sizes = []
    for name in names:
        entry = view.entries[name]
        if is_ignored(name) or is_sidecar(name):
            return Refused.NOT_A_FILE, f"{name} cannot be faxed"
        if entry.kind == "symlink":
            return Refused.SYMLINK, f"{name} is a symbolic link; drop the file itself"
        if entry.kind != "file":
            return Refused.NOT_A_FILE, f"{name} is not a regular file"
        extension = name.rpartition(".")[2].lower() if "." in name else ""
        if "." + extension not in ACCEPTED_TYPES:
            kind = f".{extension} files" if extension else "files without an extension"
            return Refused.TYPE, f"{name}: {kind} cannot be faxed; accepted are {accepted_list()}"
        if entry.size == 0:
            return Refused.EMPTY, f"{name}: the file is empty"
        if entry.size > p.defaults.max_file_size:
            return Refused.SIZE, (
                f"{name} is {_mb(entry.size)}; this folder takes files up to "
                f"{_mb(p.defaults.max_file_size)}"
            )
        head = view.heads.get(name, b"")
        if head is None:
            return (
                Refused.UNREADABLE,
                f"{name} cannot be read: faxgate has no permission to read it",
            )
        try:
            check_document(name, entry.size, head)
        except DocumentRefused as refused:
            return Refused.CONTENT, str(refused)
        sizes.append(entry.size)
    try:
        check_batch(sizes)
    except DocumentRefused as refused:
        return Refused.SIZE, str(refused)
    return None


def _drop(
    documents: tuple[str, ...],
    sidecar_name: str | None,
    sidecar: Sidecar | None,
    defaults: Defaults,
    source: NumberSource,
    numbers: tuple[FaxNumber, ...] = (),
) -> Drop | Refuse:
    names = documents if sidecar_name is None else (*documents, sidecar_name)
    from_line = None
    if sidecar is not None:
        try:
            numbers = sidecar_numbers(sidecar, defaults.policy)
            from_line = sidecar_from_line(sidecar, defaults.policy)
        except SidecarError as exc:
            return Refuse(names, Refused.BAD_NUMBER, str(exc))
    return Drop(
        documents=documents,
        sidecar=sidecar_name,
        numbers=numbers,
        source=source,
        from_line=from_line,
        cover_to=_first(sidecar.cover_to if sidecar else None, defaults.cover_to),
        cover_from=_first(sidecar.cover_from if sidecar else None, defaults.cover_from),
        cover_message=_first(sidecar.message if sidecar else None, defaults.cover_message),
        notify=_first(sidecar.notify if sidecar else None, defaults.notify),
        priority=PRIORITIES[sidecar.priority] if sidecar else 0,
    )


def _patience(defaults: Defaults) -> float:
    return max(defaults.sidecar_wait, 1.0)


def _next_look(p: _Plan, since: float) -> float:
    """When to look again at a file waiting since `since`: its patience, then as often."""
    patience = _patience(p.defaults)
    return since + patience if p.now - since < patience else p.now + patience


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v), None)


def _names(action: Action) -> tuple[str, ...]:
    match action:
        case Drop():
            sidecar = () if action.sidecar is None else (action.sidecar,)
            return (*action.documents, *sidecar)
        case Refuse():
            return action.names
        case Wait():
            return (action.name,)


def _mb(size: int) -> str:
    return f"{size / 1048576:.1f} MB" if size >= 104858 else f"{size} bytes"
