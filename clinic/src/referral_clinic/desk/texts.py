"""The desk's words and how it writes dates, ages and phone numbers, in the clinic's language (nb or en).

Texts live in gettext catalogues, `locale/<lang>/LC_MESSAGES/desk.po`, read at start with Babel's
`read_po`: no compiled `.mo` file has to be built or kept in step, so `pip install` of the package works
as it is (docs/decisions/0017-desk-texts-from-po-files.md). The message ids are the English texts; an
empty translation falls back to the id, as gettext does. Times are shown in Europe/Oslo time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.pofile import read_po

from referral_protocol import wording
from referral_protocol.contact import age_on

LANGUAGES = ("nb", "en")
# Dates as written in Norway, and in British English (day before month) for an English-speaking desk.
_DATE_LOCALE = {"nb": "nb_NO", "en": "en_GB"}
DOMAIN = "desk"
CLINIC_TIME = ZoneInfo("Europe/Oslo")


def N_(message: str) -> str:
    """Marks a text for the catalogue where it is defined; it is translated where it is shown."""
    return message


@functools.cache
def _catalogue(lang: str) -> dict[str, str | tuple[str, ...]]:
    source = resources.files(__package__).joinpath("locale", lang, "LC_MESSAGES", f"{DOMAIN}.po")
    with source.open("rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    found: dict[str, str | tuple[str, ...]] = {}
    for message in catalog:
        if not message.id or message.fuzzy:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        if isinstance(message.string, str):
            if message.string:
                found[key] = message.string
        elif message.string and all(message.string):
            found[key] = tuple(message.string)
    return found


@dataclass(frozen=True)
class Texts:
    """What a page or the PDF needs to speak the clinic's language."""

    lang: str

    def __post_init__(self) -> None:
        if self.lang not in LANGUAGES:
            raise ValueError(f"language must be one of {LANGUAGES}")

    def gettext(self, message: str) -> str:
        found = _catalogue(self.lang).get(message)
        return found if isinstance(found, str) else message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        # nb and en both have two forms, "one" for exactly 1 (their Plural-Forms say so too)
        found = _catalogue(self.lang).get(singular)
        index = 0 if n == 1 else 1
        if isinstance(found, tuple) and len(found) > index:
            return found[index]
        return singular if n == 1 else plural

    def when(self, moment: datetime) -> str:
        """A moment in Oslo time: '20. nov. 2026 kl. 10:30' / '20 Nov 2026, 10:30'."""
        local = moment.astimezone(CLINIC_TIME)
        day = format_date(local.date(), format="medium", locale=_DATE_LOCALE[self.lang])
        clock = format_datetime(local, format="HH:mm", locale=_DATE_LOCALE[self.lang])
        return f"{day} kl. {clock}" if self.lang == "nb" else f"{day}, {clock}"

    def day(self, value: date) -> str:
        return format_date(value, format="long", locale=_DATE_LOCALE[self.lang])

    def age(self, birth_date: date, today: date) -> str:
        years = age_on(birth_date, today)
        return self.ngettext("%(n)d year", "%(n)d years", years) % {"n": years}

    def category(self, slug: str | None) -> str:
        if slug is None:
            return self.gettext("Not given")
        # The broker's catalogues name the categories (`category.<slug>`), as on the patient's pages.
        return wording.category_name(self.lang, slug)


def phone_shown(e164: str) -> str:
    """'+4741234567' as people write it: '+47 41 23 45 67'; anything unparseable as it came."""
    import phonenumbers

    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))


def today_in_oslo(now: datetime) -> date:
    return now.astimezone(CLINIC_TIME).date()
