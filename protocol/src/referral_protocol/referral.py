"""A referral: what a patient submits, what is sealed to a clinic, and what the broker keeps of it."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.contact import ContactInvalid, age_on, normalise_email, normalise_phone
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.validation import has_control_characters, without_control_characters

Slug = Annotated[str, Meta(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$", max_length=63)]

MAX_DESCRIPTION = 10_000
MAX_CLINICS_PER_REFERRAL = 10
OLDEST_PLAUSIBLE_AGE = 130

#: The error code of a text holding control characters (`validation.has_control_characters`), and its words.
CONTROL_CHARACTERS = "control_characters"
NAME_CONTROL_CHARACTERS = "the name holds an invisible control character (such as a tab or line break); type it again"
DESCRIPTION_CONTROL_CHARACTERS = (
    "the text holds invisible control characters (other than line breaks and tabs); remove them or type it again"
)


class Need(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    description: Annotated[str, Meta(min_length=1, max_length=MAX_DESCRIPTION)]
    category: Annotated[str, Meta(max_length=40)] | None = None


class Patient(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    email: Annotated[str, Meta(min_length=3, max_length=254)]
    phone: Annotated[str, Meta(min_length=3, max_length=40)]
    birth_date: date


class ConsentGiven(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    version: Annotated[str, Meta(max_length=40)]
    accepted: bool


class ReferralRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`POST /api/v1/referrals`: what a patient submits."""

    clinics: Annotated[list[Slug], Meta(min_length=1, max_length=MAX_CLINICS_PER_REFERRAL)]
    need: Need
    patient: Patient
    consent: ConsentGiven


class CheckedReferral(msgspec.Struct, frozen=True):
    """A request that passed every rule that needs no database: contact details normalised."""

    clinics: list[str]
    need: Need
    patient: Patient


def check_request(request: ReferralRequest, *, today: date, minimum_age: int) -> CheckedReferral:
    """Apply the product's rules to a well-typed request; raise InvalidRequest naming every broken one."""
    errors: list[FieldError] = []
    patient = request.patient
    name = patient.name.strip()
    if not name:
        errors.append(FieldError("patient.name", "invalid", "write your full name"))
    elif has_control_characters(name, multiline=False):
        errors.append(FieldError("patient.name", CONTROL_CHARACTERS, NAME_CONTROL_CHARACTERS))
    email = phone = ""
    try:
        email = normalise_email(patient.email)
    except ContactInvalid as exc:
        errors.append(FieldError("patient.email", "invalid", str(exc)))
    try:
        phone = normalise_phone(patient.phone)
    except ContactInvalid as exc:
        errors.append(FieldError("patient.phone", "invalid", str(exc)))
    age = age_on(patient.birth_date, today)
    if patient.birth_date > today or age > OLDEST_PLAUSIBLE_AGE:
        errors.append(FieldError("patient.birth_date", "invalid", "this birth date is not possible"))
    elif age < minimum_age:
        errors.append(
            FieldError(
                "patient.birth_date",
                "too_young",
                f"you must be at least {minimum_age} years old to send a request yourself; "
                "ask a parent or guardian to send it for you",
            )
        )
    if not request.need.description.strip():
        errors.append(FieldError("need.description", "required", "describe what you need help with"))
    elif has_control_characters(request.need.description, multiline=True):
        errors.append(FieldError("need.description", CONTROL_CHARACTERS, DESCRIPTION_CONTROL_CHARACTERS))
    if request.need.category is not None and request.need.category not in CATEGORIES:
        errors.append(FieldError("need.category", "unknown", "choose one of the listed categories"))
    if not request.consent.accepted:
        errors.append(FieldError("consent.accepted", "required", "consent is needed to send the request"))
    if request.consent.version != CONSENT_VERSION:
        errors.append(
            FieldError(
                "consent.version",
                "outdated",
                f"the consent text has changed; read and accept version {CONSENT_VERSION}",
            )
        )
    if len(set(request.clinics)) != len(request.clinics):
        errors.append(FieldError("clinics", "duplicate", "each clinic can be chosen once"))
    if errors:
        raise InvalidRequest(errors)
    return CheckedReferral(
        clinics=list(request.clinics),
        need=request.need,
        patient=Patient(name=name, email=email, phone=phone, birth_date=patient.birth_date),
    )


def readable_need(need: Need) -> Need:
    """`need` as a clinic may show or export it: a referral sent before control characters were refused
    may hold them; each becomes U+FFFD (line breaks and tabs stay)."""
    return msgspec.structs.replace(need, description=without_control_characters(need.description, multiline=True))


def readable_patient(patient: Patient) -> Patient:
    """`patient` as a clinic may show or export it (see `readable_need`); every field is one line."""
    return msgspec.structs.replace(
        patient,
        name=without_control_characters(patient.name, multiline=False),
        email=without_control_characters(patient.email, multiline=False),
        phone=without_control_characters(patient.phone, multiline=False),
    )


class SealedConsent(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    version: str
    accepted_at: datetime
    text_sha256: str


class ReferralPayload(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The plaintext sealed to one clinic. It exists only in the broker's memory and on the clinic's machine."""

    format: str
    delivery_id: str
    reference: str
    clinic: str
    submitted_at: datetime
    patient: Patient
    need: Need
    consent: SealedConsent


REFERRAL_PAYLOAD_FORMAT = "referral-broker/referral/v1"


class ContactCopy(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The broker's own copy of what it may need to answer the patient's rights; stored only AEAD-encrypted."""

    name: str
    email: str
    phone: str
    birth_date: date
    category: str | None


class DeliverySummary(msgspec.Struct, frozen=True):
    clinic: str
    status: str


class Receipt(msgspec.Struct, frozen=True):
    """The reply to an accepted referral. `manage_url` holds a secret shown once and stored only hashed."""

    reference: str
    manage_url: str
    submitted_at: datetime
    deliveries: list[DeliverySummary]
