"""A clinic named as Norway names it: `init` takes its organisation number (mod-11 checked) and HER-id,
keeps them in the folder's config.json, signs them into the enrolment file, and the FHIR export names the
Organization by them with the Norwegian identifier systems and HL7 Norway's no-basis profile."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from clinic_folder import HER_ID, ORGANISATION_NUMBER, SLUG, Clinic, init_argv
from referral_clinic import fhir
from referral_clinic.cli import main
from referral_clinic.keystore import ClinicDir
from referral_protocol.clinic_identity import (
    ClinicSecrets,
    EnrollmentInvalid,
    check_enrollment,
    make_enrollment,
)
from referral_protocol.encoding import format_public_key
from referral_protocol.envelope import BrokerSigner
from referral_protocol.organisation import (
    HER_ID_SYSTEM,
    ORGANISATION_NUMBER_SYSTEM,
    OrganisationNumberInvalid,
    her_id,
    organisation_number,
)


@pytest.mark.parametrize("given", ["987654325", "987 654 325", " 923609016 ", "974760673"])
def test_organisation_numbers_with_a_right_check_digit_are_taken_without_spaces(given: str) -> None:
    assert organisation_number(given) == given.replace(" ", "").strip()


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("987654326", "check digit"),  # one digit off
        ("923609061", "check digit"),  # two digits swapped
        ("98765432", "nine digits"),
        ("9876543250", "nine digits"),
        ("98765432x", "nine digits"),
        ("٩٨٧٦٥٤٣٢٥", "nine digits"),  # Arabic-Indic digits are digits to Python, not to Enhetsregisteret
        ("", "nine digits"),
    ],
)
def test_organisation_numbers_that_are_not_are_refused_saying_why(given: str, why: str) -> None:
    with pytest.raises(OrganisationNumberInvalid, match=why):
        organisation_number(given)


@pytest.mark.parametrize("given", ["0123", "12ab", "1234567890", "", "-5"])
def test_her_ids_are_one_to_nine_digits(given: str) -> None:
    with pytest.raises(OrganisationNumberInvalid):
        her_id(given)
    assert her_id(" 8765432 ") == "8765432"


def test_init_keeps_the_numbers_in_the_folder_and_signs_them_into_the_enrolment(clinic: Clinic) -> None:
    config = ClinicDir(clinic.dir).load_config()
    assert (config.organisation_number, config.her_id) == (ORGANISATION_NUMBER, HER_ID)
    enrollment = check_enrollment((clinic.dir / "enrollment.json").read_bytes())
    assert (enrollment.organisation_number, enrollment.her_id) == (ORGANISATION_NUMBER, HER_ID)
    raw = json.loads((clinic.dir / "enrollment.json").read_text())
    assert raw["organisation_number"] == "987654325" and raw["her_id"] == "8765432"  # the names the spec gives


def test_an_enrolment_whose_numbers_were_changed_after_signing_is_refused(clinic: Clinic) -> None:
    raw = json.loads((clinic.dir / "enrollment.json").read_text())
    for field, value in (("organisation_number", "923609016"), ("her_id", "1234567")):
        with pytest.raises(EnrollmentInvalid, match="altered"):
            check_enrollment(json.dumps({**raw, field: value}).encode())
    del raw["her_id"]
    with pytest.raises(EnrollmentInvalid, match="altered"):
        check_enrollment(json.dumps(raw).encode())


def test_an_enrolment_with_a_wrong_check_digit_is_refused_though_its_proof_holds() -> None:
    e = make_enrollment(ClinicSecrets.generate("a"), "A", datetime.now(UTC), organisation_number="987654326")
    with pytest.raises(EnrollmentInvalid, match="check digit"):
        check_enrollment(msgspec.json.encode(e))


def test_an_enrolment_file_from_before_the_numbers_still_verifies() -> None:
    e = make_enrollment(ClinicSecrets.generate("a"), "A", datetime.now(UTC))
    data = msgspec.json.encode(e)
    assert b"organisation_number" not in data and b"her_id" not in data  # the old shape, byte for byte
    assert check_enrollment(data).organisation_number is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--organisation-number", "987654326"], "check digit is wrong"),
        (["--organisation-number", "12345"], "nine digits"),
        (["--organisation-number", "987654325", "--her-id", "HER-12"], "not a HER-id"),
    ],
)
def test_init_refuses_a_wrong_number_before_making_anything(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))
    argv = argv[: argv.index("--organisation-number")] + flags
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "c").exists()


def test_init_asks_for_the_organisation_number(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))
    with pytest.raises(SystemExit) as exited:
        main(argv[: argv.index("--organisation-number")])
    assert exited.value.code == 2
    assert "--organisation-number" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_a_clinic_without_a_her_id_is_enrolled_without_one(
    tmp_path: Path, clinic_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = init_argv(tmp_path / "c", format_public_key(BrokerSigner.generate().public_key))
    assert main(argv[: argv.index("--her-id")]) == 0
    raw = json.loads((tmp_path / "c" / "enrollment.json").read_text())
    assert raw["organisation_number"] == ORGANISATION_NUMBER and "her_id" not in raw


def test_the_fhir_organization_is_named_by_its_norwegian_numbers_and_claims_no_basis(clinic: Clinic) -> None:
    from fhir.resources.R4B.organization import Organization

    referral = clinic.serve()
    assert clinic.pull("--format", "fhir") == 0
    bundle = json.loads((clinic.out / "fhir" / f"{referral.reference}.fhir.json").read_text())
    organization = bundle["entry"][2]["resource"]
    Organization.model_validate(organization)
    assert organization["meta"] == {"profile": ["http://hl7.no/fhir/StructureDefinition/no-basis-Organization"]}
    assert organization["identifier"] == [
        {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": ORGANISATION_NUMBER},
        {"system": "urn:oid:2.16.578.1.12.4.1.2", "value": HER_ID},
        {"system": fhir.CLINIC_SYSTEM, "value": SLUG},
    ]
    assert (ORGANISATION_NUMBER_SYSTEM, HER_ID_SYSTEM) == (
        "urn:oid:2.16.578.1.12.4.1.4.101",
        "urn:oid:2.16.578.1.12.4.1.2",
    )


def test_a_folder_made_before_the_numbers_still_exports_and_claims_no_profile(clinic: Clinic) -> None:
    config_path = clinic.dir / "config.json"
    old = {k: v for k, v in json.loads(config_path.read_text()).items() if k not in ("organisation_number", "her_id")}
    config_path.write_text(json.dumps(old))
    referral = clinic.serve()
    assert clinic.pull("--format", "fhir") == 0
    bundle = json.loads((clinic.out / "fhir" / f"{referral.reference}.fhir.json").read_text())
    organization = bundle["entry"][2]["resource"]
    assert "meta" not in organization
    assert organization["identifier"] == [{"system": fhir.CLINIC_SYSTEM, "value": SLUG}]
