"""The protocol's JSON Schemas: shipped as generated, valid draft 2020-12, served at stable URLs, and met by
everything the broker really produces (payloads from intake, notices, envelopes, inbox pages from the API)."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from litestar.testing import AsyncTestClient

from referral_broker.services import clinic_notices, dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.store import referrals
from referral_broker.web.app import create_app
from referral_protocol import schemas
from referral_protocol.clinic_identity import ClinicSecrets, make_enrollment, new_machine_request, rotation_request
from referral_protocol.encoding import key_id
from referral_protocol.enrolment import AckRequest, InboxPage, Refusal, RefusalRequest
from referral_protocol.envelope import OpeningKeys, verify
from referral_protocol.notice import NoticeKind
from referral_protocol.referral import Patient
from referral_protocol.request_signature import sign_request
from referral_protocol.webhook import WebhookBody
from tests.clinic_wheels import ROOT, run_clean
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json

BASE = "http://testserver.local"


def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.load(name), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _valid(name: str, instance: object) -> None:
    """`instance` meets schema `name`, and would not without any one of its required top-level fields."""
    validator = _validator(name)
    validator.validate(instance)
    assert isinstance(instance, dict)
    required = _required(name)
    assert required and required <= set(instance), name
    for field in required:
        assert not validator.is_valid({k: v for k, v in instance.items() if k != field}), (name, field)


def _required(name: str) -> set[str]:
    schema = schemas.load(name)
    top = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return set(top.get("required", []))


# --- the files -------------------------------------------------------------------------------------------


def test_the_listed_names_are_exactly_the_generated_schemas() -> None:
    assert tuple(sorted(schemas.generate())) == schemas.NAMES


@pytest.mark.parametrize("name", schemas.NAMES)
def test_each_shipped_schema_is_what_generation_gives(name: str) -> None:
    made = schemas.encode(schemas.generate()[name])
    assert schemas.shipped(name) == made, f"{name} is stale: run python -m devstack.protocol_schemas"


@pytest.mark.parametrize("name", schemas.NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema_with_its_stable_id(name: str) -> None:
    schema = schemas.load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"/protocol/schemas/{name}.schema.json"


def test_an_unknown_schema_name_is_not_read_from_the_package() -> None:
    with pytest.raises(KeyError):
        schemas.shipped("../__init__")


# --- what must fail --------------------------------------------------------------------------------------


def _referral_payload() -> dict[str, Any]:
    return {
        "format": "referral-broker/referral/v1",
        "delivery_id": "0000508a-1c6e-8f3b-9a1d-5e7c2b40f001",
        "reference": "RB-7K3QM-X2D9P",
        "clinic": "test-clinic",
        "submitted_at": "2026-11-02T09:30:00Z",
        "patient": {"name": "T", "email": "t@example.no", "phone": "+4740000000", "birth_date": "1980-01-31"},
        "need": {"description": "x", "category": None},
        "consent": {"version": "2026-11-01", "accepted_at": "2026-11-02T09:30:00Z", "text_sha256": "00"},
    }


def test_a_complete_payload_passes_and_one_missing_any_required_field_fails() -> None:
    validator = _validator("referral-payload-v1")
    validator.validate(_referral_payload())
    for field in _referral_payload():
        broken = _referral_payload()
        del broken[field]
        assert not validator.is_valid(broken), field
    nested = _referral_payload()
    del nested["patient"]["birth_date"]
    assert not validator.is_valid(nested)


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("format", "referral-broker/referral/v2"),
        ("submitted_at", "yesterday"),
        ("extra", 1),
        ("delivery_id", "not-an-id"),
    ],
)
def test_a_payload_with_a_wrong_value_or_an_unknown_field_fails(change: str, value: object) -> None:
    broken = _referral_payload()
    broken[change] = value
    with pytest.raises(ValidationError):
        _valid("referral-payload-v1", broken)


def test_a_notice_schema_holds_its_kind_and_only_a_correction_carries_the_patient() -> None:
    notice = {
        "format": "referral-broker/notice/v1",
        "kind": "erasure",
        "notice_id": "0000508a-1c6e-8f3b-9a1d-5e7c2b40f0aa",
        "delivery_id": "0000508a-1c6e-8f3b-9a1d-5e7c2b40f001",
        "reference": "RB-7K3QM-X2D9P",
        "clinic": "test-clinic",
        "issued_at": "2026-11-02T09:30:00Z",
        "requested_at": "2026-11-02T09:30:00Z",
        "message": "...",
        "patient": None,
    }
    _valid("notice-erasure-v1", notice)
    assert not _validator("notice-withdrawal-v1").is_valid(notice)  # another kind
    assert not _validator("notice-correction-v1").is_valid({**notice, "kind": "correction"})  # no patient
    patient = _referral_payload()["patient"]
    _valid("notice-correction-v1", {**notice, "kind": "correction", "patient": patient})
    assert not _validator("notice-erasure-v1").is_valid({**notice, "patient": patient})


# --- what the broker really produces ---------------------------------------------------------------------


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell())
    async with AsyncTestClient(app=app, base_url=BASE) as c:
        yield c


async def _signed_get(client: AsyncTestClient[Any], clinic: EnrolledClinic, path: str) -> Any:
    headers = sign_request(
        "GET", BASE + path, {}, None, key_id=key_id(clinic.secrets.signing_public), seed=clinic.secrets.signing_seed
    )
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response


def _opened(item: dict[str, Any], broker: BrokerContext, clinic: EnrolledClinic) -> tuple[str, dict[str, Any]]:
    """Validate an inbox item's envelope and signed body by their schemas; return the kind and payload."""
    envelope_bytes = base64.b64decode(item["envelope"], validate=True)
    envelope = json.loads(envelope_bytes)
    _valid("envelope-v1", envelope)
    body = json.loads(base64.b64decode(envelope["body"], validate=True))
    _valid("envelope-body-v1", body)
    assert envelope["signer"] == key_id(broker.keys.signer.public_key)
    assert [r["key_id"] for r in body["recipients"]] == clinic.secrets.encryption_key_ids
    verified = verify(envelope_bytes, broker.keys.signer.public_key)
    payload: dict[str, Any] = json.loads(OpeningKeys(clinic.secrets.encryption_secrets).unseal(verified))
    return body["kind"], payload


async def test_intake_notices_envelopes_and_inbox_pages_from_the_real_api_meet_their_schemas(
    client: AsyncTestClient[Any], broker: BrokerContext
) -> None:
    clinic = await enrol_clinic(broker, "klinikk-a")
    response = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]))
    assert response.status_code == 201, response.text
    reference = response.json()["reference"]
    referral_id = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, referral_id)

    page = (await _signed_get(client, clinic, "/api/v1/clinic/inbox?after=start")).json()
    _valid("inbox-page", page)
    assert len(page["items"]) == 1
    _valid("inbox-item", page["items"][0])
    kind, payload = _opened(page["items"][0], broker, clinic)
    assert kind == "referral"
    _valid("referral-payload-v1", payload)
    assert payload["reference"] == reference and payload["need"]["category"] == "physiotherapy"
    ack = msgspec.json.encode(AckRequest(delivery_ids=[page["items"][0]["delivery_id"]]))
    _valid("ack-request", json.loads(ack))
    path = "/api/v1/clinic/inbox/ack"
    headers = sign_request(
        "POST",
        BASE + path,
        {"content-type": "application/json"},
        ack,
        key_id=key_id(clinic.secrets.signing_public),
        seed=clinic.secrets.signing_seed,
    )
    acked = await client.post(path, content=ack, headers=headers)
    assert acked.status_code == 200, acked.text
    _valid("ack-result", acked.json())
    assert acked.json()["acknowledged"] == [page["items"][0]["delivery_id"]]

    # One notice of each kind, sealed by the broker's own code about the referral the clinic has now served.
    async with broker.pool.acquire() as conn, conn.transaction():
        views = await referrals.deliveries_of(conn, referral_id)
        for notice_kind in NoticeKind:
            await clinic_notices.seal_notices(
                broker,
                conn,
                kind=notice_kind,
                reference=reference,
                deliveries=views,
                requested_at=datetime.now(UTC),
                patient=Patient(
                    name="Kari Nordmann", email="kari@example.no", phone="+4741234567", birth_date=date(1990, 5, 17)
                ),
            )
    page = (await _signed_get(client, clinic, "/api/v1/clinic/inbox?limit=100")).json()
    _valid("inbox-page", page)
    by_kind = dict(_opened(item, broker, clinic) for item in page["items"])
    assert set(by_kind) == {k.value for k in NoticeKind}
    for notice_kind, notice in by_kind.items():
        _valid(f"notice-{notice_kind}-v1", notice)
        assert notice["reference"] == reference

    status = (await _signed_get(client, clinic, "/api/v1/clinic/status")).json()
    _valid("clinic-status", status)
    msgspec.convert(page, InboxPage)  # and what the schema accepts the protocol's own type reads


async def test_the_broker_serves_each_schema_cacheable_with_its_id_under_the_public_url(
    client: AsyncTestClient[Any], settings: Settings
) -> None:
    for name in schemas.NAMES:
        response = await client.get(f"/protocol/schemas/{name}.schema.json")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("application/schema+json")
        assert response.headers["cache-control"] == "public, max-age=86400"
        served = response.json()
        assert served["$id"] == settings.public_url.rstrip("/") + f"/protocol/schemas/{name}.schema.json"
        assert {**served, "$id": schemas.load(name)["$id"]} == schemas.load(name)
    for missing in ("nothing.schema.json", "inbox-page.json", "inbox-page", "../enrolment.py"):
        response = await client.get(f"/protocol/schemas/{missing}")
        assert response.status_code == 404, missing
        assert "error" in response.json()  # JSON for a program, not the patient's 404 page


def test_the_protocol_wheel_carries_every_schema(tmp_path: Path) -> None:
    """Clinic tools get the schemas with referral-protocol, as package data of the built wheel."""
    source = tmp_path / "protocol"
    shutil.copytree(ROOT / "protocol", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    run_clean([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp_path, source])
    (wheel,) = tmp_path.glob("referral_protocol-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"referral_protocol/schemas/{n}.schema.json" for n in schemas.NAMES} <= names


def test_enrolment_files_key_requests_and_webhook_bodies_as_made_meet_their_schemas() -> None:
    now = datetime.now(UTC)
    clinic = ClinicSecrets.generate("klinikk-a")
    _valid("enrollment-v1", json.loads(msgspec.json.encode(make_enrollment(clinic, "Klinikk A", now))))
    _valid(
        "key-request-v1", json.loads(msgspec.json.encode(new_machine_request(ClinicSecrets.generate("klinikk-a"), now)))
    )
    rotation = rotation_request(
        clinic, ClinicSecrets.generate("x").encryption_public(), clinic.encryption_key_ids[0], now
    )
    _valid("key-request-v1", json.loads(msgspec.json.encode(rotation)))
    refusal = RefusalRequest(
        refusals=[Refusal(delivery_id="0000508a-1c6e-8f3b-9a1d-5e7c2b40f001", reason="does_not_open")]
    )
    _valid("refusal-request", json.loads(msgspec.json.encode(refusal)))
    body = msgspec.json.encode(
        WebhookBody(type="referrals.reminder", clinic="klinikk-a", notification="n", sent_at=now.isoformat())
    )
    _valid("webhook-v1", json.loads(body))
    assert not _validator("webhook-v1").is_valid({**json.loads(body), "type": "referrals.gossip"})
