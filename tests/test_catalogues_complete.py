"""Every text the templates and the code ask for is in every catalogue that needs it, translated: what
`make messages-check` runs, here too so that a missing text fails the tests and the check is covered."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po, write_po

from referral_broker import texts
from referral_broker.texts import completeness

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pot = tmp_path_factory.mktemp("messages") / "messages.pot"
    completeness.extract(ROOT, pot)
    return pot


def test_every_text_asked_for_is_in_every_catalogue_that_needs_it(extracted: Path) -> None:
    with extracted.open("rb") as pot:
        asked = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(pot) if m.id}
    # The extraction sees the templates, the Python code's keywords and the plurals.
    assert {"form.submit", "site.language_name", "home.count", "code.text", "clinic_mail.fetch"} <= asked
    assert completeness.problems(extracted) == []
    assert completeness.main(ROOT) == 0


def test_a_text_missing_or_untranslated_in_a_catalogue_is_named(
    extracted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The extraction as if a template had asked for a key no catalogue has.
    with extracted.open("rb") as pot:
        asked = read_po(pot)
    asked.add("home.brand_new")
    pot = tmp_path / "messages.pot"
    with pot.open("wb") as out:
        write_po(out, asked)
    # … and Nynorsk as if its translator had left one text empty.
    nn = texts.catalogue("nn")
    emptied = Catalog(locale="nn")
    for message in nn:
        if message.id:
            emptied.add(message.id, "" if message.id == "form.submit" else message.string)
    original = texts.catalogue
    monkeypatch.setattr(texts, "catalogue", lambda language: emptied if language == "nn" else original(language))
    monkeypatch.setattr(texts, "keys", lambda language: frozenset(_translated(texts.catalogue(language))))

    found = completeness.problems(pot)
    assert any("nb/LC_MESSAGES/messages.po: 'home.brand_new' (used in the code) is missing" in line for line in found)
    assert any("nn/LC_MESSAGES/messages.po: 'home.brand_new'" in line for line in found)
    assert any("nn/LC_MESSAGES/messages.po: 'form.submit'" in line and "has no translation" in line for line in found)
    # A text only the operators' pages or bokmål-and-English messages use is not asked of Nynorsk.
    assert not [line for line in found if "nn/" in line and ("'ops." in line or "'code." in line)]


def _translated(catalogue: Catalog) -> set[str]:
    return {m.id if isinstance(m.id, str) else m.id[0] for m in catalogue if m.id and m.string}
