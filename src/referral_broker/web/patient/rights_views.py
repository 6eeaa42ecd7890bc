"""What the rights pages show of a linked referral, and the correction form, in page terms.

A referral is shown as metadata only: its reference, the day it was sent, each clinic and its state (the
manage page's wording), whether consent was withdrawn, when the contact details will be anonymised, and
the notices sent to clinics. Never the need: the broker holds it only sealed to the clinics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import phonenumbers

from referral_broker.services import rights
from referral_broker.services.manage import ManagedView
from referral_broker.services.rights import LinkedView
from referral_broker.store.referrals import ManagedReferral
from referral_broker.web.i18n import Translator
from referral_broker.web.patient.manage_pages import (
    ClinicState,
    clinic_states,
    not_told_names,
    stoppable_names,
    told_names,
)
from referral_broker.web.patient.referral_form import BirthDateUnreadable, parse_birth_date
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import Patient

CONTACT_FIELDS = ("name", "email", "phone", "birth_date")


def day(t: Translator, moment: datetime | date) -> str:
    """A day, written the way each language writes it, in Norwegian time."""
    return t.day(moment)


@dataclass(frozen=True)
class SentNotice:
    clinic: str
    kind: str  # a NoticeKind value: a key under "rights.notice_kind."
    status: str  # waiting, acknowledged, expired: a key under "rights.notice_status."
    at: datetime


@dataclass(frozen=True)
class ReferralCard:
    reference: str
    submitted: str
    withdrawn: str | None
    anonymised_on: str
    states: list[ClinicState]
    notices: list[SentNotice]
    contact_readable: bool
    held: bool = False


def card(t: Translator, view: LinkedView) -> ReferralCard:
    names = {d.id: d.clinic_name for d in view.deliveries}
    managed = ManagedView(
        ManagedReferral(view.id, view.reference, view.submitted_at, view.withdrawn_at, None), view.deliveries
    )
    return ReferralCard(
        reference=view.reference,
        submitted=day(t, view.submitted_at),
        withdrawn=day(t, view.withdrawn_at) if view.withdrawn_at else None,
        anonymised_on=day(t, view.kept_until),
        states=clinic_states(managed),
        notices=[SentNotice(names.get(n.delivery_id, "?"), n.kind, n.status, n.created_at) for n in view.notices],
        contact_readable=view.contact is not None,
        held=view.held,
    )


def told_about(view: LinkedView, kind: NoticeKind) -> list[str]:
    """The clinics a notice of this kind goes to, by name, as the service decides it."""
    return told_names(view.deliveries, kind)


def not_received(view: LinkedView) -> list[str]:
    """The clinics that have not received the referral (yet): a withdrawal or erasure does not tell them."""
    return not_told_names(view.deliveries, NoticeKind.WITHDRAWAL)


def stoppable(view: LinkedView) -> list[str]:
    """The clinics whose copy a withdrawal or erasure would stop before they receive it."""
    return stoppable_names(view.deliveries)


@dataclass(frozen=True)
class Done:
    """What an action just did, shown above the list."""

    kind: str  # corrected, unchanged, withdrawn, erased
    reference: str
    stopped: list[str] = field(default_factory=list)
    told: list[str] = field(default_factory=list)  # had received it: a notice is on its way
    not_told: list[str] = field(default_factory=list)  # had not received it: no notice (withdrawn, erased)
    with_referral: list[str] = field(default_factory=list)  # not received yet: corrected details come with it
    changed: list[str] = field(default_factory=list)  # field labels in the visitor's language
    still_linked: bool = True


def _readable_phone(e164: str) -> str:
    """'+4741234567' as a person writes it: '+47 412 34 567'."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    except phonenumbers.NumberParseException:
        return e164


@dataclass
class CorrectionForm:
    """The contact details as typed, kept to be shown again when something must be fixed."""

    name: str = ""
    email: str = ""
    phone: str = ""
    birth_date: str = ""

    @classmethod
    def of(cls, view: LinkedView) -> CorrectionForm:
        contact = view.contact
        if contact is None:
            return cls()
        return cls(contact.name, contact.email, _readable_phone(contact.phone), contact.birth_date.strftime("%d.%m.%Y"))

    @classmethod
    def from_form(cls, form: Any) -> CorrectionForm:
        def one(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        return cls(*(one(name) for name in CONTACT_FIELDS))

    def to_patient(self, *, today: date) -> tuple[Patient | None, list[FieldError]]:
        """The corrected details, or None and every field that is wrong."""
        errors = [
            FieldError(name, "required", f"{name} is required")
            for name in CONTACT_FIELDS
            if not getattr(self, name).strip()
        ]
        birth_date: date | None = None
        if self.birth_date.strip():
            try:
                birth_date = parse_birth_date(self.birth_date)
            except BirthDateUnreadable as exc:
                errors.append(FieldError("birth_date", exc.code, "not a date"))
        try:
            patient = rights.check_correction(
                self.name or "-", self.email, self.phone, birth_date or date(1970, 1, 1), today=today
            )
        except InvalidRequest as exc:
            wrong = {e.field for e in errors}
            errors.extend(e for e in exc.errors if e.field not in wrong)
            return None, errors
        return (None, errors) if errors else (patient, [])
