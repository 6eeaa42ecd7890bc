"""Control 16 at the clinic: an envelope that fails any check is neither written nor acknowledged."""

from __future__ import annotations

import msgspec
import pytest

from broker_stand_in import referral_payload, sealed
from clinic_folder import SLUG, Clinic
from referral_clinic.envelope_check import ClinicKeys, Refused, open_referral
from referral_protocol.clinic_identity import ClinicSecrets
from referral_protocol.enrolment import InboxItem
from referral_protocol.envelope import BrokerSigner, seal
from referral_protocol.referral import ReferralPayload


def _assert_refused_untouched(clinic: Clinic, capsys: pytest.CaptureFixture[str], delivery_id: str, why: str) -> None:
    assert clinic.pull() == 1
    out, err = capsys.readouterr()
    assert "refused 1" in out
    assert f"refused delivery {delivery_id}: " in err and why in err
    assert "Traceback" not in err
    assert clinic.broker.acknowledged == []
    assert clinic.broker.ack_calls == []
    assert not clinic.out.exists() or list(clinic.out.iterdir()) == []
    assert clinic.ledger_events() == []


def test_tampered_envelope_is_refused_and_not_acknowledged(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve()
    envelope = bytearray(clinic.broker.inbox[payload.delivery_id])
    envelope[len(envelope) // 2] ^= 0x01
    clinic.broker.inbox[payload.delivery_id] = bytes(envelope)
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "envelope")


def test_envelope_signed_by_other_key_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve(signer=BrokerSigner.generate())
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "which this clinic has not pinned")


def test_envelope_addressed_to_other_clinic_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve(outer_clinic="other-clinic")
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "addressed to 'other-clinic'")


def test_payload_for_other_clinic_resealed_to_us_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    # The broker's key signs it, the outer address is ours, it is sealed to our key: only the inside differs.
    payload = clinic.serve(referral_payload("clinic-b"), outer_clinic=SLUG)
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "for clinic 'clinic-b'")


def test_envelope_not_sealed_to_our_key_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    stranger = ClinicSecrets.generate(SLUG)
    payload = clinic.serve(recipient_keys=[stranger.encryption_public(0)])
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "not sealed to any key")


def test_envelope_served_under_another_delivery_id_is_refused(
    clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = clinic.serve()
    clinic.broker.inbox = {"11111111-1111-4111-8111-111111111111": clinic.broker.inbox[payload.delivery_id]}
    _assert_refused_untouched(
        clinic, capsys, "11111111-1111-4111-8111-111111111111", "served under another delivery's id"
    )


def test_envelope_of_unknown_kind_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve(kind="erasure-notice")
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "cannot read")


def test_reference_that_is_not_a_file_name_is_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    payload = clinic.serve(referral_payload(SLUG, reference="../../etc/cron.d/x"))
    _assert_refused_untouched(clinic, capsys, payload.delivery_id, "file name")


def test_good_envelopes_are_kept_while_bad_ones_are_refused(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    good = clinic.serve()
    bad = clinic.serve(signer=BrokerSigner.generate())
    assert clinic.pull() == 1
    assert "pulled 2, written 1, acknowledged 1, already had 0, refused 1" in capsys.readouterr().out
    assert clinic.broker.acknowledged == [good.delivery_id]
    assert list(clinic.broker.inbox) == [bad.delivery_id]


def test_any_flipped_byte_is_refused(clinic: Clinic) -> None:
    """Every single-bit change anywhere in a served envelope is refused by the tool's checks."""
    payload: ReferralPayload = referral_payload(SLUG)
    envelope = sealed(payload, signer=clinic.broker_signer, recipient_keys=[clinic.secrets.encryption_public(0)])
    keys = ClinicKeys(
        slug=SLUG, broker_key=clinic.broker_signer.public_key, private_keys=clinic.secrets.encryption_secrets
    )
    assert open_referral(InboxItem(payload.delivery_id, envelope), keys) == payload
    accepted = []
    for position in range(len(envelope)):
        for bit in (0x01, 0x20):
            flipped = bytearray(envelope)
            flipped[position] ^= bit
            try:
                open_referral(InboxItem(payload.delivery_id, bytes(flipped)), keys)
            except Refused:
                continue
            accepted.append((position, bit))
    assert accepted == []


def test_payload_that_is_not_a_referral_document_is_refused_without_quoting_it(clinic: Clinic) -> None:
    payload = referral_payload(SLUG)
    document = msgspec.to_builtins(payload)
    document["patient"]["shoe_size"] = "SECRET-43"
    data = seal(
        msgspec.json.encode(document),
        kind="referral",
        delivery_id=payload.delivery_id,
        reference=payload.reference,
        clinic=SLUG,
        issued_at=payload.submitted_at,
        recipient_keys=[clinic.secrets.encryption_public(0)],
        signer=clinic.broker_signer,
    ).data
    keys = ClinicKeys(
        slug=SLUG, broker_key=clinic.broker_signer.public_key, private_keys=clinic.secrets.encryption_secrets
    )
    with pytest.raises(Refused) as refused:
        open_referral(InboxItem(payload.delivery_id, data), keys)
    assert "SECRET-43" not in str(refused.value)
    assert "$.patient" in str(refused.value)
