"""The docs point only at what exists, and the index of decision records lists every record.

A renamed module, a moved document or a heading reworded would otherwise leave a link that leads
nowhere, and a decision record missing from `docs/decisions/README.md` is one nobody finds.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DECISIONS = ROOT / "docs" / "decisions"
INDEX = DECISIONS / "README.md"
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *DECISIONS.glob("*.md")])
RECORD_NAME = re.compile(r"^(\d{4})-[a-z0-9][a-z0-9-]*\.md$")

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # https:, mailto:, …


def _without_code(text: str) -> str:
    """The text with code blocks and code spans blanked out, keeping line numbers."""

    def blank(match: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    return _CODE_SPAN.sub(blank, _FENCE.sub(blank, text))


def links_in(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link and reference definition outside code."""
    prose = _without_code(text)
    found = [(m.start(), m.group(1)) for m in _INLINE_LINK.finditer(prose)]
    found += [(m.start(), m.group(1)) for m in _REFERENCE_DEFINITION.finditer(prose)]
    return sorted((prose.count("\n", 0, at) + 1, target) for at, target in found)


def anchors_of(text: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces to hyphens,
    a repeated heading numbered."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    for match in _HEADING.finditer(_without_code_blocks(text)):
        heading = _CODE_SPAN.sub(lambda m: m.group(0).strip("`"), match.group(1))
        heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
        slug = "".join(c for c in heading.lower() if c in " -_" or unicodedata.category(c)[0] in "LN").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def broken_links(document: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of `document` that names a missing file or anchor, or leaves the repository."""
    text = document.read_text(encoding="utf-8")
    problems = []
    for line, target in links_in(text):
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part)
        destination = (document.parent / path_part).resolve() if path_part else document
        where = f"{document.relative_to(root)}:{line}: ({target})"
        if not destination.is_relative_to(root):
            problems.append(f"{where} leads outside the repository")
        elif not destination.exists():
            problems.append(f"{where} names {destination.relative_to(root)}, which does not exist")
        elif anchor and destination.suffix == ".md" and anchor not in anchors_of(destination.read_text("utf-8")):
            problems.append(f"{where} names a heading #{anchor} that {destination.relative_to(root)} does not have")
    return problems


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_in_the_docs_leads_to_what_exists(document: Path) -> None:
    problems = broken_links(document)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_architecture_reference_links_to_the_code_and_the_records() -> None:
    targets = [target for _, target in links_in((ROOT / "docs" / "architecture.md").read_text("utf-8"))]
    assert sum("../src/referral_broker/" in t for t in targets) > 20, "the reference should link to the code"
    assert sum(t.startswith("decisions/0") for t in targets) > 20, "the reference should link to the records"


def _records() -> list[Path]:
    return sorted(p for p in DECISIONS.glob("*.md") if p.name != "README.md")


@pytest.mark.parametrize("record", _records(), ids=lambda p: p.name)
def test_every_decision_record_is_listed_in_the_index(record: Path) -> None:
    listed = {Path(target.partition("#")[0]).name for _, target in links_in(INDEX.read_text("utf-8"))}
    title = record.read_text("utf-8").splitlines()[0].lstrip("# ").strip()
    number = record.name[:4]
    if record.name not in listed:
        pytest.fail(
            f"docs/decisions/{record.name} is not listed in docs/decisions/README.md; add the line:\n"
            f"- [{number}]({record.name}) {title.removeprefix(number).lstrip(' —-')}",
            pytrace=False,
        )


def test_decision_records_are_named_by_a_unique_number() -> None:
    misnamed = [p.name for p in _records() if not RECORD_NAME.match(p.name)]
    assert not misnamed, f"name records NNNN-words-with-hyphens.md: {misnamed}"
    by_number: dict[str, list[str]] = {}
    for record in _records():
        by_number.setdefault(record.name[:4], []).append(record.name)
    shared = {n: names for n, names in by_number.items() if len(names) > 1}
    assert not shared, f"two records share a number (numbers are unique; gaps are fine): {shared}"


def test_a_missing_file_a_missing_heading_and_a_way_out_are_each_reported(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "src" / "delivery.py").write_text("", encoding="utf-8")
    (repo / "docs" / "operations.md").write_text("# Operating\n\n## Configuration\n", encoding="utf-8")
    probe = repo / "docs" / "architecture.md"
    probe.write_text(
        "# Probe\n\nSee [ops](operations.md#configuration), [code](../src/delivery.py)\n"
        "and [gone](../src/no_such_module.py), [wrong](operations.md#no-such-heading),\n"
        "[out](../../outside.md), [site](https://example.org/x), `[not a link](nowhere.md)`.\n\n"
        "```\n[also not a link](nowhere.md)\n```\n\n[ref]: decisions/9999-none.md\n",
        encoding="utf-8",
    )
    problems = broken_links(probe, root=repo)
    assert len(problems) == 4, problems
    assert problems[0].startswith("docs/architecture.md:4: (../src/no_such_module.py)")
    assert "#no-such-heading" in problems[1]
    assert "outside the repository" in problems[2]
    assert "9999-none.md, which does not exist" in problems[3]


def test_headings_get_the_anchors_github_gives_them() -> None:
    text = "# A clinic's keys after enrolment\n## `devstack/` beside it\n## Keys\n## Keys\n"
    assert anchors_of(text) == {"a-clinics-keys-after-enrolment", "devstack-beside-it", "keys", "keys-1"}
