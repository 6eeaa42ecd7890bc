"""Intake seals to what it read of the clinics a moment ago, and the insert checks it is still so."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from referral_broker.services import clinic_keys, enrolment, intake, operator_actions
from referral_broker.services.context import BrokerContext
from referral_broker.services.sealing_targets import SealingTargets
from referral_broker.store import clinics
from referral_protocol.clinic_identity import ClinicSecrets, endorse, new_machine_request
from referral_protocol.encoding import key_id
from referral_protocol.errors import InvalidRequest
from referral_protocol.referral import ReferralRequest
from tests.conftest import EnrolledClinic, enrol_clinic, referral_json


async def _submit(broker: BrokerContext, slug: str = "fysio-oslo") -> list[str]:
    """Submit to one clinic; the key ids its delivery was sealed to."""
    receipt = await intake.submit(broker, msgspec.convert(referral_json([slug]), ReferralRequest))
    keys: list[str] = await broker.pool.fetchval(
        "SELECT d.recipient_keys FROM deliveries d JOIN referrals r ON r.id = d.referral_id WHERE r.reference = $1",
        receipt.reference,
    )
    return keys


async def _second_key(broker: BrokerContext, clinic: EnrolledClinic) -> str:
    second = ClinicSecrets.generate(clinic.slug)
    request = endorse(new_machine_request(second, datetime.now(UTC)), clinic.secrets)
    answer = await clinic_keys.request_key(broker, msgspec.json.encode(request), actor="test")
    await enrolment.verify(broker, clinic.slug, answer.fingerprint, actor="test")
    return key_id(second.encryption_public(0))


async def test_a_key_revoked_after_this_process_read_it_is_never_sealed_to(broker: BrokerContext) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    first = key_id(clinic.secrets.encryption_public(0))
    second = await _second_key(broker, clinic)
    assert sorted(await _submit(broker)) == sorted([first, second])  # read now, remembered for seconds
    await clinic_keys.revoke_key(broker, "fysio-oslo", first, actor="test")
    assert await _submit(broker) == [second]


async def test_a_key_added_after_this_process_read_the_clinic_is_sealed_to_at_once(broker: BrokerContext) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    first = key_id(clinic.secrets.encryption_public(0))
    assert await _submit(broker) == [first]
    second = await _second_key(broker, clinic)
    assert sorted(await _submit(broker)) == sorted([first, second])


async def test_a_clinic_suspended_after_this_process_read_it_receives_nothing_more(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    await _submit(broker)
    await operator_actions.suspend_clinic(broker, "fysio-oslo", actor="test")
    with pytest.raises(InvalidRequest) as refused:
        await _submit(broker)
    assert [(e.field, e.code) for e in refused.value.errors] == [("clinics[0]", "unavailable")]
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 1


async def test_what_was_read_lately_spares_the_read_and_stale_reads_are_read_again(
    broker: BrokerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    reads = []
    real = clinics.sealing_targets

    async def counted(conn: object, slugs: list[str]) -> list[clinics.SealingTarget]:
        reads.append(slugs)
        return await real(conn, slugs)  # type: ignore[arg-type]

    monkeypatch.setattr(clinics, "sealing_targets", counted)
    now = [100.0]
    broker.sealing_targets = SealingTargets(fresh_seconds=5, clock=lambda: now[0])
    for _ in range(3):
        await _submit(broker)
    assert len(reads) == 1
    now[0] += 5
    await _submit(broker)
    assert len(reads) == 2


async def test_unknown_and_unavailable_clinics_are_always_read_from_the_database(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "fysio-oslo")
    await _submit(broker)
    await enrol_clinic(broker, "hud-bergen")  # enrolled after the first read: found at once
    assert await _submit(broker, "hud-bergen")
    with pytest.raises(InvalidRequest) as refused:
        await _submit(broker, "nowhere")
    assert refused.value.errors[0].code == "unknown"
