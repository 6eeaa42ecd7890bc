"""HL7 FHIR R4B export: one transaction Bundle per referral, for the clinic's journal system.

Each Bundle holds a ServiceRequest (the referral), the Patient (requester and subject) and the
Organization (this clinic, the performer), each with a stable id derived from the delivery or the
clinic, and each entry a PUT, so importing the Bundle again after a notice updates the same
resources instead of adding new ones. Notices are applied in the order they were issued:

- correction: the Patient (same id) carries the corrected name, e-mail, phone and birth date;
- withdrawal: ServiceRequest.status = `revoked` (consent withdrawn: the request is terminated, the
  record stays);
- erasure: ServiceRequest.status = `entered-in-error` (the request is to be treated as void, and
  erased unless the clinic must keep it).

Every notice's message is added to ServiceRequest.note with its time. The Organization is named by its
organisation number and HER-id with the Norwegian identifier systems and then claims HL7 Norway's
no-basis-Organization profile; a clinic folder made before it knew its organisation number gets only the
broker's clinic identifier and claims no profile. Text is exported without control characters (older
referrals may hold them): each becomes U+FFFD, so every resource has a valid XML form too. The Bundle
is checked with the `fhir.resources` R4B models (structure, types, cardinality) and against the code lists used here,
before it is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from referral_clinic import durable, notice_file, referral_file
from referral_clinic.keystore import ClinicConfig
from referral_clinic.notice_file import ReceivedNotice
from referral_clinic.referral_file import ReceivedReferral
from referral_protocol.notice import NoticeKind
from referral_protocol.organisation import HER_ID_SYSTEM, ORGANISATION_NUMBER_SYSTEM
from referral_protocol.referral import Patient, readable_need, readable_patient
from referral_protocol.validation import DECODE_ERRORS, without_control_characters

FHIR_SUFFIX = ".fhir.json"
REFERENCE_SYSTEM = "urn:referral-broker:reference"
DELIVERY_SYSTEM = "urn:referral-broker:delivery"
CLINIC_SYSTEM = "urn:referral-broker:clinic"
CATEGORY_SYSTEM = "urn:referral-broker:category"
#: HL7 Norway's base profile for an organisation (no-basis, published for R4; R4B's Organization is the same).
NO_BASIS_ORGANIZATION = "http://hl7.no/fhir/StructureDefinition/no-basis-Organization"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:referral-broker")

#: ServiceRequest.status after a notice of each kind (FHIR R4B request-status).
STATUS_AFTER: dict[str, str] = {
    NoticeKind.WITHDRAWAL.value: "revoked",
    NoticeKind.ERASURE.value: "entered-in-error",
}
_REQUEST_STATUSES = {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}


class FhirInvalid(Exception):
    """The Bundle made for a referral does not validate; nothing was written for it."""


@dataclass(frozen=True)
class Organization:
    slug: str
    name: str
    organisation_number: str | None = None
    her_id: str | None = None

    @classmethod
    def of(cls, config: ClinicConfig) -> Organization:
        """This clinic, as its folder's configuration names it."""
        return cls(config.slug, config.name, config.organisation_number, config.her_id)


def _id(kind: str, key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


def _patient(resource_id: str, patient: Patient) -> dict[str, Any]:
    patient = readable_patient(patient)
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "name": [{"text": patient.name}],
        "telecom": [
            {"system": "email", "value": patient.email},
            {"system": "phone", "value": patient.phone},
        ],
        "birthDate": patient.birth_date.isoformat(),
    }


def _one_line(text: str) -> str:
    return without_control_characters(text, multiline=False)


def _organization(resource_id: str, organization: Organization) -> dict[str, Any]:
    """The clinic, named as Norway names it where it knows its numbers (no-basis-Organization)."""
    identifiers = []
    if organization.organisation_number:
        identifiers.append({"system": ORGANISATION_NUMBER_SYSTEM, "value": organization.organisation_number})
    if organization.her_id:
        identifiers.append({"system": HER_ID_SYSTEM, "value": organization.her_id})
    resource: dict[str, Any] = {"resourceType": "Organization", "id": resource_id}
    if organization.organisation_number:
        resource["meta"] = {"profile": [NO_BASIS_ORGANIZATION]}
    resource["identifier"] = [*identifiers, {"system": CLINIC_SYSTEM, "value": organization.slug}]
    resource["active"] = True
    resource["name"] = _one_line(organization.name)
    return resource


def _instant(at: datetime) -> str:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def bundle_for(
    referral: ReceivedReferral,
    organization: Organization,
    notices: Iterable[ReceivedNotice] = (),
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The Bundle as plain JSON data, validated; `notices` are applied oldest first."""
    request_id = _id("service-request", referral.delivery_id)
    patient_id = _id("patient", referral.delivery_id)
    organization_id = _id("organization", organization.slug)
    patient = referral.patient
    status = "active"
    notes: list[dict[str, Any]] = [{"text": readable_need(referral.need).description}]
    for notice in sorted(notices, key=lambda n: (n.issued_at, n.notice_id)):
        if notice.delivery_id != referral.delivery_id:
            continue
        if notice.kind == NoticeKind.CORRECTION and notice.patient is not None:
            patient = notice.patient
        status = STATUS_AFTER.get(notice.kind, status)
        message = without_control_characters(notice.message, multiline=True)
        notes.append({"time": _instant(notice.issued_at), "text": f"[{notice.kind}] {message}"})
    patient_ref = {"reference": f"urn:uuid:{patient_id}"}
    service_request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "identifier": [
            {"system": REFERENCE_SYSTEM, "value": referral.reference},
            {"system": DELIVERY_SYSTEM, "value": referral.delivery_id},
        ],
        "status": status,
        "intent": "order",
        "subject": patient_ref,
        "requester": patient_ref,
        "performer": [{"reference": f"urn:uuid:{organization_id}", "display": _one_line(organization.name)}],
        "authoredOn": _instant(referral.submitted_at),
        "note": notes,
    }
    if referral.need.category:
        service_request["reasonCode"] = [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": referral.need.category}], "text": referral.need.category}
        ]
    resources = [
        service_request,
        _patient(patient_id, patient),
        _organization(organization_id, organization),
    ]
    bundle = {
        "resourceType": "Bundle",
        "id": _id("bundle", referral.delivery_id),
        "identifier": {"system": REFERENCE_SYSTEM, "value": referral.reference},
        "type": "transaction",
        "timestamp": _instant(now or datetime.now(UTC)),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }
    validate(bundle)
    return bundle


def validate(bundle: dict[str, Any]) -> None:
    """Check the Bundle and each resource in it with the fhir.resources R4B models."""
    # Imported here: the models take a moment to load, and only an export needs them.
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.organization import Organization as FhirOrganization
    from fhir.resources.R4B.patient import Patient as FhirPatient
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from pydantic import ValidationError

    models: dict[str, Any] = {
        "ServiceRequest": ServiceRequest,
        "Patient": FhirPatient,
        "Organization": FhirOrganization,
    }
    try:
        Bundle.model_validate(bundle)
        for entry in bundle["entry"]:
            resource = entry["resource"]
            models[resource["resourceType"]].model_validate(resource)
    except ValidationError as exc:
        raise FhirInvalid(
            f"the FHIR bundle does not validate: {exc.error_count()} problem(s), first at "
            f"{'.'.join(str(p) for p in exc.errors()[0]['loc'])}"
        ) from None
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "ServiceRequest" and resource["status"] not in _REQUEST_STATUSES:
            raise FhirInvalid(f"ServiceRequest.status {resource['status']!r} is not an R4B request status")


def write_bundle(
    folder: Path, referral: ReceivedReferral, organization: Organization, notices: list[ReceivedNotice]
) -> Path:
    """Write `<reference>.fhir.json` durably; a later export replaces it (it is derived from the files)."""
    bundle = bundle_for(referral, organization, notices)
    target = folder / f"{referral.reference}{FHIR_SUFFIX}"
    durable.write_new_file(target, msgspec.json.format(msgspec.json.encode(bundle), indent=2) + b"\n")
    return target


@dataclass
class ExportReport:
    written: list[Path]
    failed: dict[str, str]  # file name -> why


def referral_files(outdir: Path) -> list[Path]:
    """`<reference>.json` files: one dot only, so notices and bundles beside them are not taken."""
    return sorted(p for p in outdir.glob("*.json") if p.name.count(".") == 1 and not p.name.startswith("."))


def export(outdir: Path, to: Path, organization: Organization, references: Iterable[str] | None = None) -> ExportReport:
    """A Bundle for each referral in `outdir` (or only `references`), with its notices applied."""
    wanted = None if references is None else set(references)
    to.mkdir(mode=0o700, parents=True, exist_ok=True)
    report = ExportReport([], {})
    for path in referral_files(outdir):
        if wanted is not None and path.stem not in wanted:
            continue
        try:
            referral = referral_file.read(path)
            notices = notice_file.notices_of(outdir, referral.reference)
            report.written.append(write_bundle(to, referral, organization, notices))
        except DECODE_ERRORS:
            report.failed[path.name] = "not a referral file of referral-clinic"
        except FhirInvalid as exc:
            report.failed[path.name] = str(exc)
        except OSError as exc:
            report.failed[path.name] = f"cannot write: {exc.strerror or exc}"
    return report
