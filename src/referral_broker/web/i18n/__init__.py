"""The languages of the patient pages: choosing one for a request, and the texts in it.

All texts live in one catalogue per language (`nb.py`, `en.py`), plain dicts from key to a
`str.format` pattern; a test holds the two to the same keys and every key a template uses. Category
names and the consent text are not here: their one source is the domain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal
from zoneinfo import ZoneInfo

from referral_broker.web.i18n import en, nb
from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_TEXT

Language = Literal["nb", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("nb", "en")
DEFAULT_LANGUAGE: Final[Language] = "nb"
CATALOGUES: Final[dict[Language, dict[str, str]]] = {"nb": nb.MESSAGES, "en": en.MESSAGES}
#: Tags a browser may send for a language we speak; Norwegian of any written standard gets bokmål.
_TAGS: Final[dict[str, Language]] = {"nb": "nb", "no": "nb", "nn": "nb", "en": "en"}
OSLO = ZoneInfo("Europe/Oslo")


def as_language(value: str | None) -> Language | None:
    """`value` if it names a language we speak (`?lang=`, the cookie), else None."""
    return value if value in LANGUAGES else None


def from_accept_language(header: str | None) -> Language | None:
    """The first language of an `Accept-Language` header we speak, by the browser's weights."""
    if not header:
        return None
    weighted: list[tuple[float, int, Language]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        language = _TAGS.get(tag.strip().lower().split("-")[0])
        if language is not None and weight > 0:
            weighted.append((-weight, position, language))
    return min(weighted)[2] if weighted else None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> Language:
    """The link's `?lang=` first, then the visitor's earlier choice, then the browser's, then bokmål."""
    return as_language(query) or as_language(cookie) or from_accept_language(accept_language) or DEFAULT_LANGUAGE


class Translator:
    """`t("key", name=value)`: the text of `key` in one language. A missing key is a bug and raises KeyError."""

    def __init__(self, language: Language) -> None:
        self.language: Language = language
        self._messages = CATALOGUES[language]

    def __call__(self, key: str, /, **values: object) -> str:
        text = self._messages[key]
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self._messages

    def category(self, slug: str) -> str:
        names = CATEGORIES.get(slug)
        return names[self.language] if names else slug

    def consent_text(self) -> str:
        return CONSENT_TEXT[self.language]

    def when(self, moment: datetime) -> str:
        """A moment in Norwegian time, written the way each language writes dates."""
        local = moment.astimezone(OSLO)
        return self(
            "date.format",
            day=local.day,
            month=local.month,
            month_name=self("date.months").split(",")[local.month - 1],
            year=local.year,
            hour=local.hour,
            minute=local.minute,
        )

    def listing(self, names: list[str]) -> str:
        """'A', 'A og B', 'A, B og C' (or 'and')."""
        if len(names) <= 1:
            return "".join(names)
        return f"{', '.join(names[:-1])} {self('form.and')} {names[-1]}"
