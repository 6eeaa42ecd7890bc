"""The words both programs show of what crosses the wire: category names and the consent texts.

They live in one gettext catalogue per language, `translations/<language>/LC_MESSAGES/protocol.po`, so the
broker's pages and the clinic's desk read the same words from one place. The broker's own catalogues take
these in (`referral_broker.texts`); the clinic's program, which has nothing of the broker, reads them here.

A consent text is what a patient agreed to: each version's texts are pinned by their SHA-256 in `consent.py`,
and a text that no longer hashes to its pin is never shown or recorded
(docs/decisions/0031-consent-text-in-the-catalogue.md).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Final

import msgspec
from babel.messages.pofile import read_po

from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_LANGUAGES, CONSENT_TEXT_SHA256

TRANSLATIONS_DIR: Final = Path(__file__).parent / "translations"


class ConsentTextChangedError(RuntimeError):
    """A catalogue's consent text is not the text its version was pinned to: never show or record it."""


@functools.cache
def languages() -> tuple[str, ...]:
    return tuple(sorted(p.parent.parent.name for p in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/protocol.po")))


@functools.cache
def messages(language: str) -> dict[str, str]:
    """Key to text in `language` (KeyError for a language without a catalogue)."""
    if language not in languages():
        raise KeyError(language)
    with (TRANSLATIONS_DIR / language / "LC_MESSAGES" / "protocol.po").open("rb") as po:
        catalogue = read_po(po, locale=None, abort_invalid=True)
    return {m.id: m.string for m in catalogue if isinstance(m.id, str) and m.id and isinstance(m.string, str)}


def category_name(language: str, slug: str) -> str:
    """The name people read of a category; the slug itself for one this version does not know."""
    return messages(language).get(f"category.{slug}", slug) if slug in CATEGORIES else slug


@functools.cache
def consent_texts(version: str) -> dict[str, str]:
    """The consent texts of `version` by language, as they hash to the version's pinned SHA-256."""
    found = {language: messages(language)[f"consent.{version}"] for language in CONSENT_LANGUAGES[version]}
    digest = hashlib.sha256(msgspec.json.encode(sorted(found.items()))).hexdigest()
    if digest != CONSENT_TEXT_SHA256[version]:
        raise ConsentTextChangedError(
            f"the catalogues' consent text of version {version} is not the text it was pinned to: "
            "a new wording needs a new version (docs/decisions/0031-consent-text-in-the-catalogue.md)"
        )
    return found
