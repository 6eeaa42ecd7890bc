"""The signed clinic API (security.md controls 1 and 2) and the patient API over HTTP."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_protocol.encoding import key_id
from referral_protocol.envelope import open_envelope
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json

BASE = "http://testserver.local"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell())
    async with AsyncTestClient(app=app, base_url=BASE) as c:
        yield c


def _signed(
    clinic: EnrolledClinic,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, str]:
    base = {"content-type": "application/json"} if body else {}
    return sign_request(
        method,
        BASE + path,
        {**base, **(headers or {})},
        body,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )


async def _submit_and_dispatch(client: AsyncTestClient[Any], broker: BrokerContext, clinics: list[str]) -> str:
    response = await client.post("/api/v1/referrals", json=referral_json(clinics))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, rid)
    return reference


async def _inbox(client: AsyncTestClient[Any], clinic: EnrolledClinic) -> list[dict[str, Any]]:
    path = "/api/v1/clinic/inbox?limit=50"
    response = await client.get(path, headers=_signed(clinic, "GET", path))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _ack(client: AsyncTestClient[Any], clinic: EnrolledClinic, ids: list[str]) -> Any:
    body = msgspec.json.encode({"delivery_ids": ids})
    path = "/api/v1/clinic/inbox/ack"
    return await client.post(path, content=body, headers=_signed(clinic, "POST", path, body))


async def test_clinic_pulls_opens_and_acknowledges_only_its_own(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    b = await enrol_clinic(broker, "klinikk-b")
    ref = await _submit_and_dispatch(client, broker, ["klinikk-a"])
    assert await _inbox(client, b) == []
    items = await _inbox(client, a)
    assert len(items) == 1
    envelope = msgspec.json.decode(msgspec.json.encode(items[0]), type=dict[str, Any])
    body, plaintext = open_envelope(
        __import__("base64").b64decode(envelope["envelope"]),
        broker_key=broker.keys.signer.public_key,
        clinic="klinikk-a",
        private_keys=a.secrets.encryption_secrets,
    )
    assert body.reference == ref and b"Vondt i kneet" in plaintext
    # Clinic B cannot acknowledge A's delivery: it is unknown to B and stays available.
    response = await _ack(client, b, [items[0]["delivery_id"]])
    assert response.json() == {"acknowledged": [], "unknown": [items[0]["delivery_id"]]}
    assert len(await _inbox(client, a)) == 1
    response = await _ack(client, a, [items[0]["delivery_id"]])
    assert response.json() == {"acknowledged": [items[0]["delivery_id"]], "unknown": []}
    # Idempotent: acknowledging again reports it acknowledged and changes nothing.
    response = await _ack(client, a, [items[0]["delivery_id"]])
    assert response.json() == {"acknowledged": [items[0]["delivery_id"]], "unknown": []}
    assert await _inbox(client, a) == []
    assert await broker.pool.fetchval("SELECT envelope FROM deliveries") is None  # ciphertext dropped


async def test_every_clinic_route_refuses_a_request_without_signature(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    assert (await client.get("/api/v1/clinic/inbox")).status_code == 401
    assert (await client.post("/api/v1/clinic/inbox/ack", json={"delivery_ids": []})).status_code == 401


async def test_replayed_request_is_refused(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    path = "/api/v1/clinic/inbox"
    headers = _signed(a, "GET", path)
    assert (await client.get(path, headers=headers)).status_code == 200
    replay = await client.get(path, headers=headers)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]


async def test_stale_request_is_refused(
    client: AsyncTestClient[Any], broker: BrokerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    real = dt.datetime
    stale = real.now(dt.UTC) - dt.timedelta(minutes=10)

    class Past(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Any:
            return stale

    monkeypatch.setattr("referral_protocol.request_signature.datetime.datetime", Past)
    headers = _signed(a, "GET", "/api/v1/clinic/inbox")
    monkeypatch.setattr("referral_protocol.request_signature.datetime.datetime", real)
    response = await client.get("/api/v1/clinic/inbox", headers=headers)
    assert response.status_code == 401


async def test_signature_over_another_path_or_body_is_refused(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    headers = _signed(a, "GET", "/api/v1/clinic/inbox?limit=1")
    assert (await client.get("/api/v1/clinic/inbox?limit=500", headers=headers)).status_code == 401
    body = msgspec.json.encode({"delivery_ids": []})
    headers = _signed(a, "POST", "/api/v1/clinic/inbox/ack", body)
    tampered = msgspec.json.encode({"delivery_ids": ["x"]})
    response = await client.post("/api/v1/clinic/inbox/ack", content=tampered, headers=headers)
    assert response.status_code == 401


async def test_unverified_clinic_is_told_to_have_its_fingerprint_confirmed(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    pending = await enrol_clinic(broker, "ny", verify=False)
    response = await client.get("/api/v1/clinic/inbox", headers=_signed(pending, "GET", "/api/v1/clinic/inbox"))
    assert response.status_code == 403
    assert pending.fingerprint in response.json()["error"]


async def test_patient_api_names_each_wrong_field(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    await enrol_clinic(broker, "klinikk-a")
    body = referral_json(["klinikk-a", "ukjent"], email="x@y", birth_date="2020-01-01")
    body["surprise"] = 1
    response = await client.post("/api/v1/referrals", json=body)
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"surprise"}  # unknown fields are refused before the rules are applied
    del body["surprise"]
    response = await client.post("/api/v1/referrals", json=body)
    assert {e["field"] for e in response.json()["errors"]} == {
        "clinics[1]",
        "patient.email",
        "patient.birth_date",
    }
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 0


async def test_consent_and_clinics_are_published(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    await enrol_clinic(broker, "klinikk-a", city="Oslo", categories=["physiotherapy"])
    await enrol_clinic(broker, "ikke-verifisert", verify=False)
    consent = (await client.get("/api/v1/consent")).json()
    assert consent["version"] and set(consent["text"]) == {"nb", "en"}
    clinics = (await client.get("/api/v1/clinics")).json()
    assert [c["slug"] for c in clinics] == ["klinikk-a"]
    assert clinics[0]["city"] == "Oslo"


async def test_body_one_byte_over_the_cap_is_refused(
    client: AsyncTestClient[Any], broker: BrokerContext, settings: Settings
) -> None:
    response = await client.post(
        "/api/v1/referrals",
        content=b" " * (settings.max_body_bytes + 1),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_security_headers_on_every_response(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    for path in ("/", "/api/v1/consent", "/api/v1/clinic/inbox", "/no-such-page"):
        response = await client.get(path)
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none' covers it
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        # This client speaks plain http: no HSTS (tests/deploy/test_deployment_defaults.py has both schemes).
        assert "strict-transport-security" not in response.headers


async def test_unexpected_failure_gives_a_generic_answer(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    broker = broker
    await broker.pool.execute("ALTER TABLE referrals RENAME TO referrals_gone")
    try:
        await enrol_clinic(broker, "klinikk-a")
        response = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]))
    finally:
        await broker.pool.execute("ALTER TABLE referrals_gone RENAME TO referrals")
    assert response.status_code == 500
    assert "Traceback" not in response.text and "referrals" not in response.text
    assert "incident" in response.json()


async def test_api_repeat_with_the_same_idempotency_key_answers_the_first_receipt(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    headers = {"idempotency-key": "client-retry-7f3a9c2e11"}
    first = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]), headers=headers)
    again = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 1
    bad = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]), headers={"idempotency-key": "x"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Idempotency-Key"
