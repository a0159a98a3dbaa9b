"""Which complete files make a fax, which are refused, which wait. No files needed."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from faxgate.domain.numbers import NumberPolicy
from faxgate.intake.folder.drops import (
    Defaults,
    Drop,
    Entry,
    FolderView,
    Kind,
    Refuse,
    Wait,
    plan,
)
from faxgate.intake.folder.naming import NumberSource
from faxgate.intake.folder.sidecar import Sidecar, SidecarError, parse_sidecar

PDF = b"%PDF-1.7 ..."
DEFAULTS = Defaults(
    policy=NumberPolicy(default_region="US"),
    max_file_size=1_000_000,
    sidecar_wait=10,
    cover_to="Front desk default",
    notify="desk@example.com",
)


def view(
    files: Mapping[str, int | tuple[Kind, int]],
    *,
    ready: Mapping[str, float] | None = None,
    folder: str = "",
    sidecars: Mapping[str, bytes] | None = None,
    heads: Mapping[str, bytes] | None = None,
    pending: set[str] | None = None,
) -> FolderView:
    entries = {
        name: Entry(*spec) if isinstance(spec, tuple) else Entry("file", spec)
        for name, spec in files.items()
    }
    read: dict[str, Sidecar | SidecarError] = {}
    for name, data in (sidecars or {}).items():
        try:
            read[name] = parse_sidecar(data)
        except SidecarError as exc:
            read[name] = exc
    return FolderView(
        folder=folder,
        entries=entries,
        ready=ready if ready is not None else dict.fromkeys(files, 0.0),
        pending=pending or set(),
        sidecars=read,
        heads=heads if heads is not None else {n: PDF for n in files if n.endswith(".pdf")},
    )


def only(actions: list[Drop | Refuse | Wait]) -> Drop | Refuse | Wait:
    assert len(actions) == 1, actions
    return actions[0]


def test_a_named_file_is_one_fax_with_the_folders_defaults() -> None:
    drop = only(plan(view({"14155550100_letter.pdf": 1000}), DEFAULTS, now=0))
    assert isinstance(drop, Drop)
    assert drop.documents == ("14155550100_letter.pdf",)
    assert [n.e164 for n in drop.numbers] == ["+14155550100"]
    assert drop.source is NumberSource.NAME
    assert (drop.cover_to, drop.notify) == ("Front desk default", "desk@example.com")


def test_a_number_folder() -> None:
    drop = only(plan(view({"letter.pdf": 1000}, folder="+44 20 7946 0958"), DEFAULTS, now=0))
    assert isinstance(drop, Drop)
    assert drop.source is NumberSource.FOLDER
    assert drop.numbers[0].e164 == "+442079460958"


def test_a_sidecar_says_everything() -> None:
    sidecar = b'{"to": ["+14155550100", "+14155550101"], "cover_to": "Legal", "notify": "a@b.org"}'
    drop = only(
        plan(
            view(
                {"14155550199_x.pdf": 10, "14155550199_x.pdf.json": 90},
                sidecars={"14155550199_x.pdf.json": sidecar},
            ),
            DEFAULTS,
            now=0,
        )
    )
    assert isinstance(drop, Drop)
    assert drop.sidecar == "14155550199_x.pdf.json"
    assert [n.e164 for n in drop.numbers] == ["+14155550100", "+14155550101"], "not the name's"
    assert (drop.cover_to, drop.notify) == ("Legal", "a@b.org")


def test_a_stem_sidecar_only_for_a_single_namesake() -> None:
    one = plan(
        view({"memo.pdf": 10, "memo.json": 20}, sidecars={"memo.json": b'{"to": "4155550100"}'}),
        DEFAULTS,
        now=0,
    )
    assert isinstance(only(one), Drop)
    two = plan(
        view(
            {"memo.pdf": 10, "memo.txt": 10, "memo.json": 20},
            sidecars={"memo.json": b'{"to": "4155550100"}'},
        ),
        DEFAULTS,
        now=0,
    )
    # memo.json could be for either: neither takes it; they wait for a number.
    assert sorted(type(a).__name__ for a in two) == ["Wait", "Wait", "Wait"]


def test_a_document_waits_for_its_sidecar_being_written() -> None:
    files = view({"14155550100.pdf": 10, "14155550100.pdf.json": 5}, ready={"14155550100.pdf": 0})
    assert only(plan(files, DEFAULTS, now=0)) == Wait("14155550100.pdf", 10)
    assert only(plan(files, DEFAULTS, now=25)) == Wait("14155550100.pdf", 35), "then as often"


def test_a_sidecar_waits_for_its_document() -> None:
    actions = plan(
        view(
            {"a.pdf.json": 20, "a.pdf": 0},
            ready={"a.pdf.json": 0},
            sidecars={"a.pdf.json": b'{"to": "1"}'},
            pending={"a.pdf"},
        ),
        DEFAULTS,
        now=0,
    )
    assert only(actions) == Wait("a.pdf.json", None)


def test_a_file_without_a_number_waits_for_a_sidecar_then_is_refused() -> None:
    files = view({"invoice.pdf": 10}, ready={"invoice.pdf": 100.0})
    assert only(plan(files, DEFAULTS, now=105)) == Wait("invoice.pdf", 110.0)
    refused = only(plan(files, DEFAULTS, now=110))
    assert isinstance(refused, Refuse)
    assert refused.code == "no_number"
    assert refused.help is not None
    assert "14155550100_invoice.pdf" in refused.help


def test_a_bad_number_is_refused_at_once_with_help() -> None:
    refused = only(plan(view({"12345_x.pdf": 10}), DEFAULTS, now=0))
    assert isinstance(refused, Refuse)
    assert (refused.code, refused.names) == ("bad_number", ("12345_x.pdf",))
    assert "too short" in refused.reason
    assert refused.help is not None


def test_a_batch_sidecar_makes_one_fax_of_several_files() -> None:
    files = {"one.pdf": 10, "two.txt": 10, "pack.json": 60}
    sidecar = b'{"to": "+14155550100", "files": ["one.pdf", "two.txt"]}'
    drop = only(
        plan(view(files, sidecars={"pack.json": sidecar}, heads={"one.pdf": PDF}), DEFAULTS, now=0)
    )
    assert isinstance(drop, Drop)
    assert (drop.documents, drop.sidecar) == (("one.pdf", "two.txt"), "pack.json")


def test_a_batch_waits_for_its_files_then_gives_up() -> None:
    sidecar = b'{"to": "+14155550100", "files": ["one.pdf", "two.pdf"]}'
    files = view(
        {"one.pdf": 10, "pack.json": 60},
        ready={"one.pdf": 0.0, "pack.json": 0.0},
        sidecars={"pack.json": sidecar},
    )
    assert sorted(plan(files, DEFAULTS, now=1), key=str) == [
        Wait("one.pdf", 10.0),
        Wait("pack.json", 10.0),
    ]
    refused = only(plan(files, DEFAULTS, now=10))
    assert isinstance(refused, Refuse)
    assert (refused.code, refused.names) == ("missing", ("one.pdf", "pack.json"))
    assert "two.pdf" in refused.reason


def test_refusals_of_what_cannot_be_faxed() -> None:
    cases: dict[str, tuple[int | tuple[Kind, int], str]] = {
        "14155550100.zip": (10, "type"),
        "14155550100_empty.pdf": (0, "empty"),
        "14155550100_big.pdf": (2_000_000, "size"),
        "14155550100_link.pdf": (("symlink", 10), "symlink"),
        "14155550100_fifo.pdf": (("other", 0), "not_a_file"),
    }
    for name, (spec, code) in cases.items():
        refused = only(plan(view({name: spec}), DEFAULTS, now=0))
        assert isinstance(refused, Refuse), name
        assert refused.code == code, name


def test_content_that_does_not_match_its_name() -> None:
    files = view({"14155550100.pdf": 10}, heads={"14155550100.pdf": b"hello"})
    refused = only(plan(files, DEFAULTS, now=0))
    assert isinstance(refused, Refuse)
    assert refused.code == "content"


def test_a_broken_sidecar_refuses_its_document_too() -> None:
    files = view(
        {"14155550100.pdf": 10, "14155550100.pdf.json": 3},
        sidecars={"14155550100.pdf.json": b"{oops"},
    )
    refused = only(plan(files, DEFAULTS, now=0))
    assert isinstance(refused, Refuse)
    assert refused.names == ("14155550100.pdf", "14155550100.pdf.json")
    assert refused.code == "sidecar"


def test_a_bad_number_in_a_sidecar() -> None:
    files = view({"a.pdf": 10, "a.pdf.json": 3}, sidecars={"a.pdf.json": b'{"to": "12"}'})
    refused = only(plan(files, DEFAULTS, now=0))
    assert isinstance(refused, Refuse)
    assert (refused.code, refused.names) == ("bad_number", ("a.pdf", "a.pdf.json"))


def test_a_lone_broken_sidecar_waits_for_its_document_then_is_refused() -> None:
    files = view({"x.pdf.json": 3}, ready={"x.pdf.json": 100.0}, sidecars={"x.pdf.json": b"[]"})
    assert only(plan(files, DEFAULTS, now=105)) == Wait("x.pdf.json", 110.0)
    refused = only(plan(files, DEFAULTS, now=110))
    assert isinstance(refused, Refuse)
    assert refused.code == "sidecar"


@pytest.mark.parametrize(("asked", "priority"), [("urgent", 1), ("bulk", -1), (None, 0)])
def test_a_sidecar_asks_for_a_priority(asked: str | None, priority: int) -> None:
    field = f', "priority": "{asked}"' if asked else ""
    sidecar = ('{"to": ["+14155550100"]' + field + "}").encode()
    drop = only(
        plan(
            view({"x.pdf": 10, "x.pdf.json": 90}, sidecars={"x.pdf.json": sidecar}),
            DEFAULTS,
            now=0,
        )
    )
    assert isinstance(drop, Drop)
    assert drop.priority == priority
