"""The broker's side of a clinic's keys: endorsed key requests, verification that retires the replaced key,
revocation that flags what only the revoked key could open, and refusals reported by the clinic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.domain.keys import KeyState
from referral_broker.services import clinic_keys, dispatch, enrolment, intake
from referral_broker.services.clinic_keys import KeyChangeRefused
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import clinics
from referral_broker.web.app import create_app
from referral_protocol.clinic_identity import (
    ClinicSecrets,
    endorse,
    key_request_fingerprint,
    new_machine_request,
    rotation_request,
)
from referral_protocol.encoding import key_id
from referral_protocol.referral import ReferralRequest
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json

BASE = "http://testserver.local"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell())
    async with AsyncTestClient(app=app, base_url=BASE) as c:
        yield c


def _signed(secrets_: ClinicSecrets, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    headers = {"content-type": "application/json"} if body else {}
    return sign_request(
        method, BASE + path, headers, body or None, key_id=key_id(secrets_.signing_public), seed=secrets_.signing_seed
    )


async def _submit(broker: BrokerContext, slug: str) -> str:
    receipt = await intake.submit(broker, msgspec.convert(referral_json([slug]), ReferralRequest))
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    await dispatch.dispatch_referral(broker, rid)
    return receipt.reference


async def _states(broker: BrokerContext, slug: str) -> dict[str, str]:
    rows = await broker.pool.fetch(
        "SELECT k.key_id, k.state FROM clinic_keys k JOIN clinics c ON c.id = k.clinic_id WHERE c.slug = $1", slug
    )
    return {r["key_id"]: r["state"] for r in rows}


async def test_rotation_seals_new_referrals_to_the_new_key_and_retires_the_old_when_nothing_waits(
    broker: BrokerContext,
) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    old = key_id(clinic.secrets.encryption_public(0))
    await _submit(broker, "fysio-oslo")
    rotated, _ = clinic.secrets.with_new_encryption_key()
    request = rotation_request(rotated, rotated.encryption_public(0), old, datetime.now(UTC))
    answer = await clinic_keys.request_key(broker, msgspec.json.encode(request), actor="test")
    assert answer.fingerprint == key_request_fingerprint(request)
    new = rotated.encryption_key_ids[0]
    assert (await _states(broker, "fysio-oslo"))[new] == "pending"
    # the same request again (a retry) answers the same and adds nothing
    assert await clinic_keys.request_key(broker, msgspec.json.encode(request), actor="test") == answer
    with pytest.raises(Exception, match="does not match"):
        await enrolment.verify(
            broker, "fysio-oslo", clinic.fingerprint, actor="test"
        )  # the enrolment's: nothing pending
    await enrolment.verify(broker, "fysio-oslo", answer.fingerprint.lower(), actor="test")
    assert {k: v for k, v in (await _states(broker, "fysio-oslo")).items() if k in (old, new)} == {
        old: "retiring",
        new: "active",
    }
    await _submit(broker, "fysio-oslo")
    sealed = await broker.pool.fetch("SELECT recipient_keys FROM deliveries ORDER BY created_at")
    assert [list(r["recipient_keys"]) for r in sealed] == [[old], [new]]
    await broker.pool.execute("UPDATE deliveries SET status = 'acknowledged', envelope = NULL")
    from referral_broker.services import clinic_status
    from referral_broker.store import clinics as clinic_store

    row = await clinic_store.by_slug(broker.pool, "fysio-oslo")
    assert row is not None
    report = await clinic_status.status(broker, row)
    assert {k.key_id: k.state for k in report.keys}[old] == "retired"


async def test_key_requests_must_be_endorsed_by_an_active_signing_key_of_the_same_clinic(
    broker: BrokerContext,
) -> None:
    a = await enrol_clinic(broker, "fysio-oslo")
    b = await enrol_clinic(broker, "hud-bergen")
    newcomer = ClinicSecrets.generate("fysio-oslo")
    unendorsed = new_machine_request(newcomer, datetime.now(UTC))
    with pytest.raises(KeyChangeRefused, match="endorsed"):
        await clinic_keys.request_key(broker, msgspec.json.encode(unendorsed), actor="test")
    by_other = endorse(unendorsed, msgspec.structs.replace(b.secrets, slug="fysio-oslo"))
    with pytest.raises(KeyChangeRefused, match="endorsed"):
        await clinic_keys.request_key(broker, msgspec.json.encode(by_other), actor="test")
    good = endorse(unendorsed, a.secrets)
    tampered = msgspec.structs.replace(good, encryption_key=ClinicSecrets.generate("x").encryption_public(0))
    with pytest.raises(KeyChangeRefused, match="altered"):
        await clinic_keys.request_key(broker, msgspec.json.encode(tampered), actor="test")
    answer = await clinic_keys.request_key(broker, msgspec.json.encode(good), actor="test")
    assert answer.key_ids == [key_id(newcomer.encryption_public(0)), key_id(newcomer.signing_public)]
    events = await broker.pool.fetch("SELECT action FROM audit_events WHERE action LIKE 'clinic.key%'")
    assert [e["action"] for e in events] == ["clinic.key_requested"]


async def test_revocation_flags_only_what_no_usable_key_can_open(broker: BrokerContext) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    first = key_id(clinic.secrets.encryption_public(0))
    only_first = await _submit(broker, "fysio-oslo")
    second = ClinicSecrets.generate("fysio-oslo")
    answer = await clinic_keys.request_key(
        broker, msgspec.json.encode(endorse(new_machine_request(second, datetime.now(UTC)), clinic.secrets)), actor="t"
    )
    await enrolment.verify(broker, "fysio-oslo", answer.fingerprint, actor="test")
    both = await _submit(broker, "fysio-oslo")
    done = await clinic_keys.revoke_key(broker, "fysio-oslo", first, actor="test")
    assert done.active_encryption_keys == 1
    rows = await broker.pool.fetch(
        """SELECT r.reference, d.status, d.envelope IS NULL AS dropped FROM deliveries d
           JOIN referrals r ON r.id = d.referral_id"""
    )
    assert {r["reference"]: (r["status"], r["dropped"]) for r in rows} == {
        only_first: ("undeliverable", True),
        both: ("available", False),
    }
    with pytest.raises(KeyChangeRefused, match="already revoked"):
        await clinic_keys.revoke_key(broker, "fysio-oslo", first, actor="test")
    assert (await _states(broker, "fysio-oslo"))[first] == "revoked"


async def test_the_store_moves_a_key_only_along_the_key_state_machine(broker: BrokerContext) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    row = await clinics.by_slug(broker.pool, "fysio-oslo")
    assert row is not None
    key = await clinics.key_by_key_id(broker.pool, row.id, key_id(clinic.secrets.encryption_public(0)))
    assert key is not None and key.state == KeyState.ACTIVE
    now = datetime.now(UTC)
    async with broker.pool.acquire() as conn:
        assert not await clinics.move_key(conn, key.id, target=KeyState.PENDING, now=now, by="test")
        assert not await clinics.move_key(conn, key.id, target=KeyState.RETIRED, now=now, by="test")
        assert await clinics.move_key(conn, key.id, target=KeyState.REVOKED, now=now, by="test")
        assert not any([await clinics.move_key(conn, key.id, target=t, now=now, by="test") for t in KeyState])
    assert (await _states(broker, "fysio-oslo"))[key.key_id] == "revoked"


async def test_a_clinic_can_refuse_only_its_own_waiting_deliveries(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    a = await enrol_clinic(broker, "fysio-oslo")
    b: EnrolledClinic = await enrol_clinic(broker, "hud-bergen")
    await _submit(broker, "fysio-oslo")
    await _submit(broker, "hud-bergen")
    ids = {
        r["slug"]: str(r["id"])
        for r in await broker.pool.fetch("SELECT c.slug, d.id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id")
    }
    body = msgspec.json.encode(
        {
            "refusals": [
                {"delivery_id": ids["fysio-oslo"], "reason": "bad_signature"},
                {"delivery_id": ids["hud-bergen"], "reason": "bad_signature"},
            ]
        }
    )
    path = "/api/v1/clinic/inbox/refuse"
    response = await client.post(path, content=body, headers=_signed(a.secrets, "POST", path, body))
    assert response.status_code == 200, response.text
    assert response.json() == {"refused": [ids["fysio-oslo"]], "unknown": [ids["hud-bergen"]]}
    statuses = {r["id"]: r["status"] for r in await broker.pool.fetch("SELECT id::text, status FROM deliveries")}
    assert statuses == {ids["fysio-oslo"]: "undeliverable", ids["hud-bergen"]: "available"}
    # the refused delivery has left A's inbox; the status endpoint counts it
    status = await client.get("/api/v1/clinic/status", headers=_signed(a.secrets, "GET", "/api/v1/clinic/status"))
    assert status.status_code == 200
    assert status.json()["waiting"] == 0 and status.json()["undeliverable"] == 1
    unsigned = await client.get("/api/v1/clinic/status")
    assert unsigned.status_code == 401
    del b
