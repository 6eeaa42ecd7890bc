"""Every text the code asks for is in every catalogue that needs it, with a translation.

`make messages-check` (part of `make test`) runs `python -m referral_broker.texts.completeness` from the
repository's root: it extracts the keys the templates and the code name with `pybabel extract -F babel.cfg`
into a temporary template, and fails, saying which, when a catalogue lacks one.

Keys built at run time (`"status." ~ s.status`) cannot be extracted; they are held by the second rule: every
catalogue has the keys the default catalogue has (less those it need not have, `texts.needs`).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from babel.messages.frontend import CommandLineInterface
from babel.messages.pofile import read_po

from referral_broker import texts

#: What names a key besides gettext's own keywords: a Translator (`t("key")`), `in_both("key")`,
#: `text(language, "key")`.
KEYWORDS = ("t", "in_both", "text:2")


def extract(root: Path, out: Path) -> None:
    """`pybabel extract -F babel.cfg` over the repository at `root`, into `out`."""
    keywords = [arg for keyword in KEYWORDS for arg in ("-k", keyword)]
    command = ["pybabel", "-q", "extract", "-F", str(root / "babel.cfg"), *keywords, "-o", str(out), str(root)]
    CommandLineInterface().run(command)  # type: ignore[no-untyped-call]


def _key(message_id: str | tuple[str, ...] | list[str]) -> str:
    return message_id if isinstance(message_id, str) else message_id[0]


def problems(extracted: Path) -> list[str]:
    """One line per text missing from, or untranslated in, a catalogue that needs it."""
    with extracted.open("rb") as pot:
        asked = sorted({_key(m.id) for m in read_po(pot) if m.id})
    found: list[str] = []
    default = texts.keys(texts.DEFAULT_LANGUAGE)
    for language in texts.languages():
        have = texts.keys(language)  # keys with a non-empty translation
        listed = {_key(m.id) for m in texts.catalogue(language) if m.id}
        path = texts.catalogue_path(language).relative_to(texts.TRANSLATIONS_DIR.parent.parent.parent.parent)
        for key in sorted({*asked, *default}):
            if not texts.needs(language, key) or key in have:
                continue
            why = "has no translation" if key in listed else "is missing"
            where = "used in the code" if key in asked else f"in the {texts.DEFAULT_LANGUAGE} catalogue"
            found.append(f"{path}: {key!r} ({where}) {why}")
    return found


def main(root: Path | None = None) -> int:
    with tempfile.TemporaryDirectory() as folder:
        pot = Path(folder) / "messages.pot"
        extract(root or Path.cwd(), pot)
        found = problems(pot)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            f"{len(found)} text(s) missing from the catalogues: add them, translated, and run again.", file=sys.stderr
        )
        return 1
    print(f"Every text the pages and messages ask for is in every catalogue ({', '.join(texts.languages())}).")
    return 0


if __name__ == "__main__":  # pragma: no cover - run by `make messages-check`
    raise SystemExit(main())
