"""Real messages from other mail projects' test suites, each with its expected decision.

The messages are in tests/corpus/real/<project>/ (SOURCES.md says where each came from,
under which licence); expected.toml beside them says, for each, what its sender meant:
the documents faxed, or the refusal's reasons, line by line. A `known_open` entry is a
decision faxgate does not make yet: it must fail until it does.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from faxgate.domain.message import MessageRefused, fax_content

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "real"
FAX = "14155550100@fax.local"


def expectations() -> list[dict[str, Any]]:
    with (CORPUS / "expected.toml").open("rb") as file:
        entries: list[dict[str, Any]] = tomllib.load(file)["message"]
    return entries


ENTRIES = expectations()


def test_the_corpus_is_real_mail_from_five_projects_each_message_with_a_decision() -> None:
    files = {path.relative_to(CORPUS).as_posix() for path in CORPUS.rglob("*.eml")}
    listed = [entry["file"] for entry in ENTRIES]
    assert sorted(listed) == sorted(files)  # each once, none without a decision
    assert len(files) >= 200
    projects = {name.split("/")[0] for name in files}
    assert len(projects) >= 5
    sources = (CORPUS / "SOURCES.md").read_text()
    assert all(f"`{project}/`" in sources for project in projects)
    for entry in ENTRIES:
        assert ("accept" in entry) != ("refuse" in entry), entry


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["file"] for entry in ENTRIES])
def test_each_message_gets_its_senders_decision(entry: dict[str, Any]) -> None:
    if "known_open" in entry:
        pytest.xfail(entry["known_open"])
    raw = (CORPUS / entry["file"]).read_bytes()
    if "refuse" in entry:
        with pytest.raises(MessageRefused) as refused:
            fax_content(raw, recipient=FAX)
        assert refused.value.reason.splitlines() == entry["refuse"], entry.get("why")
        return
    content = fax_content(raw, recipient=FAX)
    names = [document.name for document in content.documents]
    assert names == entry["accept"], entry.get("why")
    for document in content.documents:
        assert document.content, document.name
