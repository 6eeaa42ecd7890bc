"""Notices about a received referral (correction, erasure, withdrawal): opened, checked, filed beside the
referral, recorded, acknowledged, and applied by the FHIR export."""

from __future__ import annotations

import json
import stat
import uuid
from datetime import UTC, date, datetime

import msgspec
import pytest

from broker_stand_in import CANARY_NAME
from clinic_folder import POSIX_MODES, SLUG, Clinic
from referral_clinic import notice_file
from referral_clinic.cli import main
from referral_protocol.envelope import seal
from referral_protocol.notice import NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_protocol.referral import Patient, ReferralPayload

CORRECTED = Patient(name="Kari Rettet", email="kari.ny@example.no", phone="+4799988877", birth_date=date(1990, 5, 17))


def notice_for(referral: ReferralPayload, kind: NoticeKind, **changes: object) -> NoticePayload:
    notice = NoticePayload(
        format=NOTICE_PAYLOAD_FORMAT,
        kind=kind.value,
        notice_id=str(uuid.uuid4()),
        delivery_id=referral.delivery_id,
        reference=referral.reference,
        clinic=SLUG,
        issued_at=datetime.now(UTC),
        requested_at=datetime.now(UTC),
        # The broker writes the words (its catalogues); the clinic files whatever the sealed notice says.
        message=f"The patient sent a {kind.value} notice.",
        patient=CORRECTED if kind == NoticeKind.CORRECTION else None,
    )
    return msgspec.structs.replace(notice, **changes)


def serve_notice(
    clinic: Clinic,
    notice: NoticePayload,
    *,
    envelope_id: str | None = None,
    envelope_kind: str | None = None,
    envelope_reference: str | None = None,
) -> None:
    """Seal a notice as the broker does: kind = the notice kind, delivery_id = the notice id."""
    envelope = seal(
        msgspec.json.encode(notice),
        kind=envelope_kind or notice.kind,
        delivery_id=envelope_id or notice.notice_id,
        reference=envelope_reference or notice.reference,
        clinic=SLUG,
        issued_at=notice.issued_at,
        recipient_keys=[clinic.secrets.encryption_public(0)],
        signer=clinic.broker_signer,
    ).data
    clinic.broker.add(envelope_id or notice.notice_id, envelope)


def test_correction_is_filed_beside_the_referral_recorded_and_acknowledged(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    referral = clinic.serve()
    assert clinic.pull() == 0
    correction = notice_for(referral, NoticeKind.CORRECTION)
    serve_notice(clinic, correction)
    assert clinic.pull() == 0
    assert "notices 1" in capsys.readouterr().out
    path = clinic.out / f"{referral.reference}.correction-{correction.notice_id}.json"
    assert not POSIX_MODES or stat.S_IMODE(path.stat().st_mode) == 0o600
    filed = notice_file.read(path)
    assert filed.patient == CORRECTED and filed.delivery_id == referral.delivery_id
    assert clinic.broker.acknowledged == [referral.delivery_id, correction.notice_id]
    # the referral's own file is untouched, and the ledger keeps both apart
    assert json.loads((clinic.out / f"{referral.reference}.json").read_text())["patient"]["name"] == CANARY_NAME
    written = [e for e in clinic.ledger_events() if e["event"] == "written"]
    assert [(e["delivery_id"], e.get("notice")) for e in written] == [
        (referral.delivery_id, None),
        (correction.notice_id, "correction"),
    ]


def test_a_notice_pulled_again_is_not_written_twice(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    referral = clinic.serve()
    withdrawal = notice_for(referral, NoticeKind.WITHDRAWAL)
    serve_notice(clinic, withdrawal)
    clinic.broker.ack_failures.append(503)  # written, but the acknowledgement is lost
    assert clinic.pull() == 1
    assert clinic.pull() == 0
    assert "already had 2" in capsys.readouterr().out
    assert len(list(clinic.out.glob(f"{referral.reference}.withdrawal-*.json"))) == 1
    assert sorted(clinic.broker.acknowledged) == sorted([referral.delivery_id, withdrawal.notice_id])


def test_a_referral_after_its_notice_does_not_collide_in_the_ledger(clinic: Clinic) -> None:
    """The ledger maps reference -> referral delivery; a notice with the same reference must not take it."""
    referral = clinic.serve()
    assert clinic.pull() == 0
    serve_notice(clinic, notice_for(referral, NoticeKind.CORRECTION))
    serve_notice(clinic, notice_for(referral, NoticeKind.CORRECTION))  # a second correction, its own file
    assert clinic.pull() == 0
    assert len(list(clinic.out.glob(f"{referral.reference}.correction-*.json"))) == 2
    clinic.serve(referral)  # the referral served again (a replay): recognised, not refused
    assert clinic.pull() == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"clinic": "another-clinic"}, "re-sealed to this clinic"),
        ({"notice_id": "not-the-envelopes-id"}, "another delivery than its envelope"),
        ({"kind": "erasure"}, "another kind than its envelope"),
        ({"format": "referral-broker/notice/v9"}, "unknown format"),
        ({"patient": None}, "no corrected details"),
        ({"reference": "../../etc/passwd"}, "file name"),
    ],
)
def test_a_notice_failing_a_check_is_neither_written_nor_acknowledged(
    clinic: Clinic, capsys: pytest.CaptureFixture[str], change: dict[str, object], why: str
) -> None:
    referral = clinic.serve()
    assert clinic.pull() == 0
    good = notice_for(referral, NoticeKind.CORRECTION)
    bad = msgspec.structs.replace(good, **change)
    serve_notice(clinic, bad, envelope_id=good.notice_id, envelope_kind=good.kind)
    assert clinic.pull() == 1
    assert why in capsys.readouterr().err
    assert not list(clinic.out.glob("*correction*"))
    assert good.notice_id not in clinic.broker.acknowledged


def test_a_notice_about_another_reference_than_its_envelope_is_refused(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    referral = clinic.serve()
    assert clinic.pull() == 0
    notice = notice_for(referral, NoticeKind.ERASURE)
    serve_notice(clinic, notice, envelope_reference="RB-ANOTHER-ONE")
    assert clinic.pull() == 1
    assert "another delivery than its envelope" in capsys.readouterr().err
    assert not list(clinic.out.glob("*erasure*"))


def test_an_unknown_envelope_kind_is_left_waiting_not_reported(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    referral = clinic.serve()
    assert clinic.pull() == 0
    notice = notice_for(referral, NoticeKind.CORRECTION)
    envelope = seal(
        msgspec.json.encode(notice),
        kind="rectification-v2",
        delivery_id=notice.notice_id,
        reference=notice.reference,
        clinic=SLUG,
        issued_at=notice.issued_at,
        recipient_keys=[clinic.secrets.encryption_public(0)],
        signer=clinic.broker_signer,
    ).data
    clinic.broker.add(notice.notice_id, envelope)
    assert clinic.pull() == 1
    assert "upgrade it" in capsys.readouterr().err
    assert clinic.broker.refused == {}  # a newer tool may read it: never taken out of the inbox
    assert notice.notice_id in clinic.broker.inbox


def test_fhir_export_applies_corrections_and_erasure(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    from fhir.resources.R4B.bundle import Bundle

    referral = clinic.serve()
    assert clinic.pull("--format", "fhir") == 0
    bundle_path = clinic.out / "fhir" / f"{referral.reference}.fhir.json"
    first = json.loads(bundle_path.read_text())
    Bundle.model_validate(first)
    service_request, patient, organization = (e["resource"] for e in first["entry"])
    assert service_request["status"] == "active" and patient["name"] == [{"text": CANARY_NAME}]

    serve_notice(clinic, notice_for(referral, NoticeKind.CORRECTION))
    serve_notice(clinic, notice_for(referral, NoticeKind.ERASURE, issued_at=datetime.now(UTC)))
    assert clinic.pull("--format", "fhir") == 0
    updated = json.loads(bundle_path.read_text())
    Bundle.model_validate(updated)
    sr2, patient2, org2 = (e["resource"] for e in updated["entry"])
    assert (sr2["id"], patient2["id"], org2["id"]) == (service_request["id"], patient["id"], organization["id"])
    assert patient2["name"] == [{"text": CORRECTED.name}]
    assert {"system": "email", "value": CORRECTED.email} in patient2["telecom"]
    assert sr2["status"] == "entered-in-error"
    assert [n["text"].split("]")[0] for n in sr2["note"][1:]] == ["[correction", "[erasure"]
    assert all(e["request"]["method"] == "PUT" for e in updated["entry"])

    # the separate export over what was pulled gives the same resources
    capsys.readouterr()
    target = clinic.out.parent / "journal"
    assert main(["export", "--dir", str(clinic.dir), "--out", str(clinic.out), "--to", str(target)]) == 0
    assert "exported 1 FHIR bundle(s)" in capsys.readouterr().out
    again = json.loads((target / f"{referral.reference}.fhir.json").read_text())
    assert [e["resource"] for e in again["entry"]] == [e["resource"] for e in updated["entry"]]


def test_withdrawal_revokes_the_service_request(clinic: Clinic) -> None:
    referral = clinic.serve()
    serve_notice(clinic, notice_for(referral, NoticeKind.WITHDRAWAL))
    assert clinic.pull("--format", "fhir") == 0
    bundle = json.loads((clinic.out / "fhir" / f"{referral.reference}.fhir.json").read_text())
    assert bundle["entry"][0]["resource"]["status"] == "revoked"
