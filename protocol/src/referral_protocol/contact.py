"""Checking and normalising the contact details people type."""

from __future__ import annotations

from datetime import date

DEFAULT_REGION = "NO"

# phonenumbers and email-validator are imported where they are used: they are slow to import
# (docs/performance.md), and the clinic tool, which imports the referral types this module's checks
# belong to, never checks a typed address. After the first call an import is a dictionary look-up.


class ContactInvalid(ValueError):
    """The value cannot be a working e-mail address or phone number; the message says why."""


def normalise_email(raw: str) -> str:
    """A syntactically valid address, with its domain normalised; no DNS look-up is made."""
    from email_validator import EmailNotValidError, validate_email

    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ContactInvalid(str(exc)) from None


def normalise_phone(raw: str, region: str = DEFAULT_REGION) -> str:
    """E.164 form of a number typed the Norwegian way ('412 34 567', '+47 41234567', '0047…')."""
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ContactInvalid("this is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise ContactInvalid("this phone number does not exist; check the digits and the country code")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def age_on(birth_date: date, today: date) -> int:
    """Whole years of age on `today`: a person born on 29 February turns a year older on 1 March."""
    years = today.year - birth_date.year
    if (today.month, today.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years
