"""The clinic guide says only what the clinic program really does, in both its languages.

Every `referral-clinic …` line in the guides parses with the program's own parser, every command is shown,
and the JSON examples decode as the files the program writes (`ReceivedReferral`, `ReceivedNotice`, a FHIR
R4B Bundle the export's own check accepts), so an example cannot drift from the code unnoticed.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import msgspec
import pytest

from tests.clinic_program import fhir, notice_file, referral_file
from tests.test_clinic_start_at_login import commands, parsed

ROOT = Path(__file__).resolve().parent.parent
GUIDES = [ROOT / "docs" / "clinic-guide.md", ROOT / "docs" / "clinic-guide.nb.md"]
_FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)  # fences inside a list are indented


def _blocks(guide: Path, language: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(guide.read_text("utf-8")) if lang == language]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_every_command_in_the_guide_is_one_the_program_accepts(guide: Path) -> None:
    shown = [
        line.strip()
        for _, body in _FENCE.findall(guide.read_text("utf-8"))
        for line in body.splitlines()
        if re.match(r"^\s*(\S*[/\\])?referral-clinic(\.exe)? ", line)
    ]
    assert len(shown) >= 10, "the guide should show the commands a clinic types"
    seen = set()
    for line in shown:
        words = shlex.split(line.replace("\\", "/"), comments=True)
        args = parsed(words[1:])
        seen.add(args.command if args.command != "key" else f"key {args.key_command}")
    assert seen == set(commands()), f"not shown in {guide.name}: {set(commands()) - seen}"


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_the_guides_json_examples_decode_as_the_files_the_program_writes(guide: Path) -> None:
    kinds: list[str] = []
    for body in _blocks(guide, "json"):
        data = body.encode()
        shape = json.loads(data)
        if shape.get("format") == referral_file.REFERRAL_FILE_FORMAT:
            msgspec.json.decode(data, type=referral_file.ReceivedReferral)
            kinds.append("referral")
        elif shape.get("format") == notice_file.NOTICE_FILE_FORMAT:
            kinds.append(msgspec.json.decode(data, type=notice_file.ReceivedNotice).kind)
        elif shape.get("resourceType") == "Bundle":
            fhir.validate(shape)  # the program's own check of what it exports (R4B models, code lists)
            kinds.append("fhir")
        else:
            pytest.fail(f"{guide.name}: a JSON example of no known file: {body[:80]!r}", pytrace=False)
    assert sorted(set(kinds)) == ["correction", "erasure", "fhir", "referral", "withdrawal"]


def test_the_english_and_norwegian_guides_link_each_other_and_have_the_same_sections() -> None:
    english, norwegian = (g.read_text("utf-8") for g in GUIDES)
    assert "(clinic-guide.nb.md)" in english and "(clinic-guide.md)" in norwegian
    sections = [len(re.findall(r"^## ", text, re.MULTILINE)) for text in (english, norwegian)]
    assert sections[0] == sections[1] >= 10, sections
    assert _blocks(GUIDES[0], "json") == _blocks(GUIDES[1], "json"), "both guides show the same example files"
