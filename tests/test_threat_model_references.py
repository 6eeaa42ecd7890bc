"""The threat model names the test that holds each promise; every test it names must exist.

A renamed or deleted test would otherwise leave a promise in `docs/threat-model.md` that nothing holds any
more, while the document still says something does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREAT_MODEL = ROOT / "docs" / "threat-model.md"

#: `tests/x/test_y.py` (or the clinic program's `clinic/tests/…`) followed by any `::name` parts, e.g.
#: `tests/a.py::test_b, ::test_c`.
_REFERENCE = re.compile(r"((?<![\w/])(?:clinic/)?tests/[\w/]+\.py)((?:(?:::|,\s*::)\w+)*)")


def _references(text: str) -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for match in _REFERENCE.finditer(text):
        names = named.setdefault(match.group(1), set())
        names.update(re.findall(r"::(\w+)", match.group(2)))
        # A continuation like "…::test_a, ::test_b" further along the same table cell.
        tail = text[match.end() : match.end() + 600].split("|", 1)[0].split("tests/", 1)[0]
        names.update(re.findall(r"(?:^|[,;]\s*)::(\w+)", tail))
    return named


def _defined_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def test_every_test_the_threat_model_names_exists() -> None:
    named = _references(THREAT_MODEL.read_text(encoding="utf-8"))
    assert len(named) > 20, "the threat model should name the tests that hold its promises"
    missing: list[str] = []
    for file, names in sorted(named.items()):
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
            continue
        missing += [f"{file}::{name}" for name in sorted(names - _defined_names(path))]
    assert not missing, "docs/threat-model.md names tests that do not exist:\n" + "\n".join(missing)


def test_a_missing_test_would_be_found() -> None:
    named = _references("| a promise | tests/test_intake.py::test_that_was_renamed, ::test_also_gone |")
    assert named == {"tests/test_intake.py": {"test_that_was_renamed", "test_also_gone"}}
