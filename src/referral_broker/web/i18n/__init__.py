"""The languages of the pages: choosing one for a request, and its texts through gettext and Babel.

The texts live in the gettext catalogues of `referral_broker.texts`. Templates reach them through Jinja's
i18n extension (`_("key", name=value)`, `ngettext(...)`); Python code through a `Translator`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from babel.core import negotiate_locale
from babel.dates import format_date, format_datetime
from babel.lists import format_list
from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from litestar.datastructures import Cookie
from markupsafe import Markup, escape

from referral_broker import texts
from referral_protocol import wording
from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_LANGUAGES, CONSENT_VERSION

Language = str
#: The patient pages speak every language with a catalogue; the operators' pages bokmål and English.
LANGUAGES: Final[tuple[Language, ...]] = texts.languages()
OPS_LANGUAGES: Final[tuple[Language, ...]] = texts.OPS_LANGUAGES
DEFAULT_LANGUAGE: Final[Language] = texts.DEFAULT_LANGUAGE
#: Each language's texts by key, as read from its catalogue.
CATALOGUES: Final[dict[Language, dict[str, str]]] = {language: texts.messages(language) for language in LANGUAGES}
#: The visitor's language choice: functional, not tracking; `__Host-` so no other host can set it.
LANGUAGE_COOKIE: Final = "__Host-lang"
_ONE_YEAR = 365 * 24 * 3600


def language_cookie(language: Language) -> Cookie:
    """Remembers a language chosen with `?lang=`: functional, not tracking; `__Host-` so no other host sets it."""
    return Cookie(
        key=LANGUAGE_COOKIE, value=language, path="/", max_age=_ONE_YEAR, secure=True, httponly=True, samesite="lax"
    )


#: Norwegian a page does not speak gets bokmål: `no` (written standard unsaid) always, Nynorsk where there is no
#: Nynorsk catalogue (the operators' pages). A language a page speaks is matched before any alias.
_ALIASES: Final = {"no": "nb", "nn": "nb"}
OSLO = ZoneInfo("Europe/Oslo")


def as_language(value: str | None, available: tuple[Language, ...] = LANGUAGES) -> Language | None:
    """`value` if it names a language we speak (`?lang=`, the cookie), else None."""
    return value if value in available else None


def _preferred(header: str) -> list[str]:
    """The languages of an `Accept-Language` header, most wanted first (at most 20 entries looked at)."""
    weighted: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                weight = float(params[2:])
            except ValueError:
                continue
        if tag.strip() and weight > 0:
            # The primary subtag: we write one Norwegian per standard and one English, whatever the region.
            weighted.append((-weight, position, tag.strip().lower().split("-")[0]))
    return [tag for _, _, tag in sorted(weighted)]


def from_accept_language(header: str | None, available: tuple[Language, ...] = LANGUAGES) -> Language | None:
    """The first language of an `Accept-Language` header we speak, by the browser's weights."""
    if not header:
        return None
    chosen = negotiate_locale(_preferred(header), available, sep="-", aliases=_ALIASES)
    return chosen if chosen in available else None


def choose_language(
    query: str | None,
    cookie: str | None,
    accept_language: str | None,
    available: tuple[Language, ...] = LANGUAGES,
    default: Language = DEFAULT_LANGUAGE,
) -> Language:
    """The link's `?lang=` first, then the visitor's earlier choice, then the browser's, then `default`.

    On pages that do not speak a chosen Norwegian (Nynorsk on the operators' pages), bokmål."""
    for wanted in (query, cookie):
        if wanted in LANGUAGES:
            return wanted if wanted in available else DEFAULT_LANGUAGE
    return from_accept_language(accept_language, available) or default


class Translator:
    """`t("key", name=value)`: the text of `key` in one language. A missing key is a bug and raises KeyError."""

    def __init__(self, language: Language) -> None:
        self.language: Language = language
        self.locale = texts.locale(language)
        self._translations = texts.translations(language)
        self._keys = texts.keys(language)

    def gettext(self, key: str) -> str:
        if key not in self._keys:
            raise KeyError(key)
        return self._translations.gettext(key)

    def ngettext(self, singular: str, plural: str, count: int) -> str:
        if singular not in self._keys:
            raise KeyError(singular)
        return self._translations.ngettext(singular, plural, count)

    def __call__(self, key: str, /, **values: object) -> str:
        return self.gettext(key) % values

    def has(self, key: str) -> bool:
        return key in self._keys

    def category(self, slug: str) -> str:
        return self(f"category.{slug}") if slug in CATEGORIES else slug

    def consent_language(self) -> Language:
        """This language if the current consent version was written in it, else bokmål: the text a patient
        reading this language agrees to (a translation would be a new version: decision 0031)."""
        return self.language if self.language in CONSENT_LANGUAGES[CONSENT_VERSION] else DEFAULT_LANGUAGE

    def consent_text(self) -> str:
        return wording.consent_texts(CONSENT_VERSION)[self.consent_language()]

    def when(self, moment: datetime) -> str:
        """A moment in Norwegian time, written the way each language writes dates."""
        return format_datetime(moment, self("date.pattern"), tzinfo=OSLO, locale=self.locale)

    def day(self, moment: datetime | date) -> str:
        """A day (of a moment in Norwegian time), written the way each language writes it."""
        local = moment.astimezone(OSLO).date() if isinstance(moment, datetime) else moment
        return format_date(local, self("rights.day_pattern"), locale=self.locale)

    def listing(self, names: list[str]) -> str:
        """'A', 'A og B', 'A, B og C' (or 'and')."""
        return format_list(names, locale=self.locale) if names else ""


@pass_context
def _gettext(context: Context, key: str) -> Markup:
    # Escaped here, so that a text reads the same as when templates escaped it on output (an apostrophe is
    # `&#39;`), and a catalogue can never put markup in a page.
    translator: Translator = context["t"]
    return escape(translator.gettext(key))


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> Markup:
    translator: Translator = context["t"]
    return escape(translator.ngettext(singular, plural, count))


def install(environment: Environment) -> None:
    """Jinja's i18n extension, reading the page's `t` (a Translator) for its language."""
    environment.add_extension("jinja2.ext.i18n")
    install_callables: Any = getattr(environment, "install_gettext_callables")  # noqa: B009 - added by the extension
    install_callables(_gettext, _ngettext, newstyle=True)
