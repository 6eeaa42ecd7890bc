"""How Norway names an organisation: its organisation number and, in the health network, its HER-id.

The organisation number (organisasjonsnummer, Enhetsregisteret) has nine digits, the last a mod-11 check
digit; `python-stdnum` checks it. The HER-id is the organisation's number in Norsk Helsenett's address
register (Adresseregisteret): digits only, and many private clinics have none.
"""

from __future__ import annotations

import re

from stdnum.exceptions import ValidationError as StdnumInvalid
from stdnum.no import orgnr

#: FHIR identifier systems, as the Norwegian base profiles (HL7 Norway no-basis) name them.
ORGANISATION_NUMBER_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
HER_ID_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2"

MAX_HER_ID_DIGITS = 9
_HER_ID = re.compile(rf"^[1-9][0-9]{{0,{MAX_HER_ID_DIGITS - 1}}}$")


class OrganisationNumberInvalid(ValueError):
    """Not a Norwegian organisation number; the message says what is wrong, for the person who typed it."""


def organisation_number(given: str) -> str:
    """The nine digits of `given` (spaces allowed, as it is often written: 923 609 016), checked."""
    compact = orgnr.compact(given)
    if not compact.isascii() or not compact.isdigit() or len(compact) != 9:
        raise OrganisationNumberInvalid(f"{given!r} is not an organisation number: it has nine digits")
    try:
        return str(orgnr.validate(compact))
    except StdnumInvalid:
        raise OrganisationNumberInvalid(
            f"{given!r} is not an organisation number: its check digit is wrong (a typing error?)"
        ) from None


def her_id(given: str) -> str:
    """A HER-id: 1-9 digits, no leading zero."""
    compact = given.strip()
    if not _HER_ID.match(compact):
        raise OrganisationNumberInvalid(f"{given!r} is not a HER-id: it is 1-{MAX_HER_ID_DIGITS} digits")
    return compact
