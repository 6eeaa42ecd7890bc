"""Every text a person reads, in one gettext catalogue per language: `translations/<language>/LC_MESSAGES/
messages.po` (the layout of SecureDrop and of `pybabel init`). Adding a language is adding a catalogue.

msgids are stable dotted keys ("form.submit"), not source-language sentences; bokmål is the default language
(docs/decisions/0030-gettext-catalogues.md). Keys under `ops.` are the operators' pages, which speak bokmål
and English only. Placeholders are `%(name)s`, as Jinja's i18n extension formats them.

The `.po` files are read with Babel and compiled in memory at first use, so the editable install, the wheel
and the container image need nothing but the `.po` files themselves (no `.mo` files to build or forget).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Final

from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from referral_protocol import wording

TRANSLATIONS_DIR: Final = Path(__file__).parent / "translations"
DEFAULT_LANGUAGE: Final = "nb"
#: Keys of the operators' pages: a catalogue for a language only patients read need not have them.
OPS_PREFIX: Final = "ops."
#: The operators' pages are written in these; any other Norwegian gets bokmål there.
OPS_LANGUAGES: Final[tuple[str, ...]] = ("nb", "en")
#: Texts only bokmål and English need: the versioned consent (its languages are the version's, decision 0031)
#: and what goes out in both at once (`in_both`: the one-time code, e-mails and notices to clinics, the
#: explanation in a subject-access export).
BOTH_ONLY_PREFIXES: Final[tuple[str, ...]] = ("consent.", "code.", "clinic_mail.", "notice.", "export.")


def catalogue_path(language: str) -> Path:
    return TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po"


@functools.cache
def languages() -> tuple[str, ...]:
    """Every language with a catalogue, the default first."""
    found = sorted(p.parent.parent.name for p in TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po"))
    return (DEFAULT_LANGUAGE, *(language for language in found if language != DEFAULT_LANGUAGE))


@functools.cache
def catalogue(language: str) -> Catalog:
    """The catalogue of `language` as Babel reads it (KeyError for a language without one)."""
    if language not in languages():
        raise KeyError(language)
    with catalogue_path(language).open("rb") as po:
        found = read_po(po, locale=None, abort_invalid=True)
    # Category names and consent texts are the protocol's, shared with the clinic's program: taken in here.
    for key, value in wording.messages(language).items() if language in wording.languages() else ():
        found.add(key, value)
    return found


@functools.cache
def translations(language: str) -> Translations:
    """The compiled catalogue of `language`, ready for `gettext` and `ngettext`."""
    mo = io.BytesIO()
    write_mo(mo, catalogue(language), use_fuzzy=False)
    mo.seek(0)
    return Translations(fp=mo)


@functools.cache
def keys(language: str) -> frozenset[str]:
    """The msgids `language` has a translation for (the singular id of a plural)."""
    return frozenset(messages(language))


@functools.cache
def messages(language: str) -> dict[str, str]:
    """Key to text in `language` (a plural's singular form), for code that reads a catalogue whole."""
    found: dict[str, str] = {}
    for message in catalogue(language):
        if message.id and message.string:
            key = message.id if isinstance(message.id, str) else message.id[0]
            found[key] = message.string if isinstance(message.string, str) else message.string[0]
    return found


def needs(language: str, key: str) -> bool:
    """Whether the catalogue of `language` must have `key`: every one does, but a language only patients read
    needs neither the operators' texts nor those only bokmål and English need."""
    if language in OPS_LANGUAGES:
        return True
    return not key.startswith((OPS_PREFIX, *BOTH_ONLY_PREFIXES))


def locale(language: str) -> Locale:
    """How `language` writes dates and lists: the catalogue's `Language:` header (en_GB for English)."""
    found = catalogue(language).locale
    return found if found is not None else Locale.parse(language)


def text(language: str, key: str, /, **values: object) -> str:
    """The text of `key` in `language`, its placeholders filled. A missing key is a bug and raises KeyError."""
    if key not in keys(language):
        raise KeyError(key)
    return translations(language).gettext(key) % values


def ntext(language: str, key: str, count: int, /, **values: object) -> str:
    """The singular or plural text of `key` for `count` in `language`; `%(num)s` is the count."""
    if key not in keys(language):
        raise KeyError(key)
    return translations(language).ngettext(key, f"{key}_plural", count) % {"num": count, **values}


#: Messages that go out in both languages at once (e-mails, text messages, notices to clinics).
BOTH: Final[tuple[str, str]] = ("nb", "en")


def in_both(key: str, /, **values: object) -> tuple[str, str]:
    """The text of `key` in bokmål and in English."""
    return text("nb", key, **values), text("en", key, **values)


def notice_message(kind: str) -> str:
    """What a notice tells a clinic about a referral (a `NoticeKind`), in bokmål and English."""
    return "\n".join(in_both(f"notice.{kind}"))
