"""The referral form: what a browser posts, turned into the API's `ReferralRequest`, or the fields to fix.

The form is checked in two passes that together name every wrong field at once: what only a form can
get wrong (an empty field, a birth date not written as a date, an unticked consent box), then the
product's own rules (`domain.referral.check_request`) on the rest. Fields that failed the first pass are
given stand-in values for the second, and the second pass's verdict on those is ignored. Intake applies
the rules once more on the real values before anything is stored.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgspec

from referral_broker.web.i18n import Translator
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.referral import MAX_CLINICS_PER_REFERRAL, ReferralRequest, check_request
from referral_protocol.validation import field_errors

HONEYPOT_FIELD = "website"
#: What a ticked checkbox sends: `on` when it has no value attribute (ours has none).
_TICKED = frozenset({"on", "yes", "true", "1"})

#: The API's field names (dotted) → the form's input names.
_FORM_FIELD = {
    "need.description": "description",
    "need.category": "category",
    "patient.name": "name",
    "patient.email": "email",
    "patient.phone": "phone",
    "patient.birth_date": "birth_date",
    "consent.accepted": "consent",
    "consent.version": "consent",
}
#: Valid values used in the rules pass for fields the form pass already found wrong.
_STAND_INS: dict[str, Any] = {
    "clinics": ["stand-in"],
    "category": None,
    "consent_version": CONSENT_VERSION,
    "description": "-",
    "name": "Stand In",
    "email": "stand.in@example.no",
    "phone": "+4741234567",
    "birth_date": "1970-01-01",
}

_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$")
_YEAR_MONTH_DAY = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_COMPACT = re.compile(r"^(\d{2})(\d{2})(\d{4})$")


class BirthDateUnreadable(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code  # "format": not written as a date; "invalid": a date that does not exist


def parse_birth_date(raw: str) -> date:
    """Dates as Norwegians type them: 17.05.1990, 17.5.1990, 17/05/1990, 17051990, and ISO 1990-05-17."""
    text = re.sub(r"\s+", "", raw)
    if match := _YEAR_MONTH_DAY.match(text):
        year, month, day = (int(g) for g in match.groups())
    elif match := _DAY_MONTH_YEAR.match(text) or _COMPACT.match(text):
        day, month, year = (int(g) for g in match.groups())
    else:
        raise BirthDateUnreadable("format")
    try:
        return date(year, month, day)
    except ValueError:
        raise BirthDateUnreadable("invalid") from None


def form_field(api_field: str) -> str:
    if api_field.startswith("clinics"):
        return "clinics"
    return _FORM_FIELD.get(api_field, "form")


@dataclass
class ReferralForm:
    """The values as typed, kept to be shown again when something must be fixed."""

    clinics: list[str] = field(default_factory=list)
    category: str = ""
    description: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    birth_date: str = ""
    consent: bool = False
    consent_version: str = CONSENT_VERSION
    honeypot: str = ""
    # Drawn when the form is first shown and kept through corrections: sent again (a refresh of the
    # receipt, a double click) it makes the repeat return the first receipt instead of a new referral.
    submission: str = field(default_factory=lambda: "form:" + secrets.token_urlsafe(24))

    @classmethod
    def from_form(cls, form: Any) -> ReferralForm:
        def one(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        clinics = [c for c in form.getall("clinic", []) if isinstance(c, str) and c]
        return cls(
            clinics=list(dict.fromkeys(clinics)),
            category=one("category"),
            description=one("description"),
            name=one("name"),
            email=one("email"),
            phone=one("phone"),
            birth_date=one("birth_date"),
            consent=one("consent").strip().lower() in _TICKED,
            consent_version=one("consent_version") or CONSENT_VERSION,
            honeypot=one(HONEYPOT_FIELD),
            submission=one("submission") or "form:" + secrets.token_urlsafe(24),
        )

    def to_request(self, *, today: date, minimum_age: int) -> tuple[ReferralRequest | None, list[FieldError]]:
        """The request to submit, or None and every field that is wrong."""
        errors: list[FieldError] = []
        values: dict[str, Any] = {
            "clinics": self.clinics[:MAX_CLINICS_PER_REFERRAL],
            "category": self.category or None,
            "description": self.description,
            "name": self.name.strip(),
            "email": self.email.strip(),
            "phone": self.phone.strip(),
            "birth_date": self.birth_date.strip(),
            "consent_version": self.consent_version,
        }
        for name in ("clinics", "description", "name", "email", "phone", "birth_date"):
            if not values[name] or (isinstance(values[name], str) and not values[name].strip()):
                errors.append(FieldError(name, "required", f"{name} is required"))
        if values["birth_date"]:
            try:
                values["birth_date"] = parse_birth_date(values["birth_date"]).isoformat()
            except BirthDateUnreadable as exc:
                errors.append(FieldError("birth_date", exc.code, "not a date"))
        request: ReferralRequest | None = None
        for _ in range(2):  # the second try has stand-ins for what the type check refused
            wrong = {e.field for e in errors}
            data = self._as_api_data({k: _STAND_INS[k] if k in wrong else v for k, v in values.items()})
            try:
                request = msgspec.convert(data, ReferralRequest)
                break
            except msgspec.ValidationError:
                errors.extend(self._renamed(field_errors(ReferralRequest, data), wrong))
        if request is None or not errors:
            return request, errors
        try:
            check_request(request, today=today, minimum_age=minimum_age)
        except InvalidRequest as exc:
            errors.extend(self._renamed(exc.errors, {e.field for e in errors}))
        return None, errors

    def _as_api_data(self, values: dict[str, Any]) -> dict[str, Any]:
        return {
            "clinics": values["clinics"],
            "need": {"category": values["category"], "description": values["description"]},
            "patient": {k: values[k] for k in ("name", "email", "phone", "birth_date")},
            "consent": {"version": values["consent_version"], "accepted": self.consent},
        }

    @staticmethod
    def _renamed(api_errors: list[FieldError], skip: set[str]) -> list[FieldError]:
        renamed = [FieldError(form_field(e.field), e.code, e.message) for e in api_errors]
        return [e for e in renamed if e.field not in skip]


def messages_by_field(errors: list[FieldError], t: Translator, *, minimum_age: int) -> dict[str, str]:
    """One message per form field, in the visitor's language, in the order the fields were named."""
    messages: dict[str, str] = {}
    for error in errors:
        name = (
            form_field(error.field) if error.field in _FORM_FIELD or error.field.startswith("clinics") else error.field
        )
        if name in messages:
            continue
        for key in (f"error.{name}.{error.code}", f"error.{name}.invalid", "error.generic"):
            if t.has(key):
                messages[name] = t(key, minimum_age=minimum_age)
                break
    return messages
