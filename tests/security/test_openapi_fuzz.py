"""schemathesis against the OpenAPI document the running app serves (security.md control 9).

The real app runs under uvicorn on a free port over this run's PostgreSQL and Redis, with clinics
enrolled so that generated referrals can reach the rules behind the schema. schemathesis reads
`/schema/openapi.json` and sends examples, boundary values and random (also schema-violating) data.

- The patient API (`/api/v1/consent`, `/api/v1/clinics`, `/api/v1/referrals`): every check but one — no 5xx,
  status codes and bodies as documented, and schema-violating data refused (so the schema states what
  the server enforces: `additionalProperties: false` from `forbid_unknown_fields`, lengths, patterns,
  formats, the `Idempotency-Key` header).
- The clinic API, unsigned: every request is refused, and never with a 5xx.
- The clinic API, signed (`signed_clinic_requests`: each generated request signed with the enrolled test clinic's
  key, as `referral-clinic` signs it): no 5xx, and status codes, headers and bodies as documented, also for
  the inbox items of a real dispatched referral.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
from litestar.openapi.spec import Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType
from openapi_spec_validator import validate

from referral_broker.services import dispatch
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_broker.web.clinic_api.api_document import InboxOperation
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json
from tests.patient_web.live_server import LiveServer
from tests.security import signed_clinic_requests

ST = str(Path(sys.executable).parent / "st")


CLINIC_OPERATIONS = {
    ("GET", "/api/v1/clinic/inbox"),
    ("GET", "/api/v1/clinic/status"),
    ("POST", "/api/v1/clinic/inbox/ack"),
    ("POST", "/api/v1/clinic/inbox/refuse"),
    ("POST", "/api/v1/clinic/keys"),
}


@pytest.fixture
async def clinic_a(broker: BrokerContext) -> EnrolledClinic:
    clinic = await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    return clinic


@pytest.fixture
async def live(settings: Settings, broker: BrokerContext, clinic_a: EnrolledClinic) -> Iterator[LiveServer]:
    app = create_app(msgspec.structs.replace(settings, submit_rate=0), doorbell_factory=lambda s: RecordingDoorbell())
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def waiting_referral(live: LiveServer, broker: BrokerContext) -> str:
    """A referral dispatched to klinikk-a, so its inbox answers with a real envelope."""
    async with httpx.AsyncClient(base_url=live.url) as client:
        response = await client.post("/api/v1/referrals", json=referral_json(["klinikk-a"]))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    referral_id = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    await dispatch.dispatch_referral(broker, referral_id)
    return reference


def _schemathesis(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ST, "run", f"{url}/schema/openapi.json", "--seed", "20261122", "--workers", "1", "--no-color", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def _signed_get(live: LiveServer, clinic: EnrolledClinic, path: str) -> httpx.Response:
    url = live.url + path
    headers = sign_request(
        "GET", url, {}, None, key_id=key_id(clinic.secrets.signing_public), seed=clinic.secrets.signing_seed
    )
    return httpx.get(url, headers=headers)


def test_schema_declares_the_referral_body_and_its_refusals(live: LiveServer) -> None:
    document = httpx.get(f"{live.url}/schema/openapi.json").json()
    submit = document["paths"]["/api/v1/referrals"]["post"]
    body = submit["requestBody"]["content"]["application/json"]["schema"]
    assert body["additionalProperties"] is False
    for part in ("need", "patient", "consent"):
        assert body["properties"][part]["additionalProperties"] is False
    assert body["required"] == ["clinics", "need", "patient", "consent"]
    assert {"200", "201", "400", "413", "415", "422", "429"} <= set(submit["responses"])
    # An unreadable body is 400 with the same per-field shape as a 422 (field `body`).
    unreadable = submit["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert document["components"]["schemas"][unreadable]["required"] == ["errors"]
    assert [p["name"] for p in submit["parameters"]] == ["Idempotency-Key"]


def test_patient_api_keeps_its_schema_under_generated_and_hostile_data(live: LiveServer) -> None:
    result = _schemathesis(
        live.url,
        "--include-path-regex",
        "^/api/v1/(consent|clinics|referrals)$",
        "--checks",
        "all",
        # Not every schema-valid referral is acceptable: a real e-mail address, a Norwegian phone number
        # that exists, an active clinic, the minimum age and the current consent version are rules beyond
        # the schema, answered with 422 naming each field (documented). Schema-*invalid* data must be
        # refused: that check (negative_data_rejection) stays on.
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "60",
        "--phases",
        "examples,coverage,fuzzing",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_clinic_api_never_fails_with_a_server_error(live: LiveServer) -> None:
    result = _schemathesis(
        live.url,
        "--include-path-regex",
        "^/api/v1/clinic/",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--phases",
        "coverage,fuzzing",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_schema_declares_the_clinic_bodies_signature_and_refusals(live: LiveServer) -> None:
    document = httpx.get(f"{live.url}/schema/openapi.json").json()
    validate(document)  # a valid OpenAPI 3.1 document, as generators and viewers read it
    schemes = document["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "header", "Signature"),
        ("apiKey", "header", "Signature-Input"),
    }
    profile = " ".join(s["description"] for s in schemes.values())
    for word in ("RFC 9421", "Content-Digest", "created", "keyid", "nonce", "ed25519", "referral-broker-clinic"):
        assert word in profile
    clinic_paths = {p: item for p, item in document["paths"].items() if p.startswith("/api/v1/clinic/")}
    operations = {(method.upper(), path): op for path, item in clinic_paths.items() for method, op in item.items()}
    assert set(operations) == CLINIC_OPERATIONS
    for (method, _), operation in operations.items():
        assert operation["security"] == [{name: [] for name in schemes}]
        assert {"400", "401", "403"} <= set(operation["responses"])
        if method == "POST":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["additionalProperties"] is False
            assert body["required"]
            assert {"413", "422"} & set(operation["responses"])
            digest = [p for p in operation["parameters"] if p["name"] == "Content-Digest"]
            assert digest and digest[0]["in"] == "header" and digest[0]["required"] is True
    ack = operations["POST", "/api/v1/clinic/inbox/ack"]["requestBody"]["content"]["application/json"]["schema"]
    assert ack["required"] == ["delivery_ids"]
    refuse = operations["POST", "/api/v1/clinic/inbox/refuse"]["requestBody"]["content"]["application/json"]["schema"]
    assert refuse["properties"]["refusals"]["items"]["required"] == ["delivery_id", "reason"]
    inbox = operations["GET", "/api/v1/clinic/inbox"]
    assert [p["name"] for p in inbox["parameters"]] == ["limit", "after", "wait"]
    wait = inbox["parameters"][2]["schema"]
    assert (wait["type"], wait["minimum"], wait["maximum"]) == ("integer", 0, 25)


def test_inbox_envelopes_are_what_the_schema_says(
    live: LiveServer, clinic_a: EnrolledClinic, waiting_referral: str
) -> None:
    """The envelope's documented layers (base64 → signed envelope → base64 → body) hold for a real referral."""
    document = httpx.get(f"{live.url}/schema/openapi.json").json()
    page_schema = document["paths"]["/api/v1/clinic/inbox"]["get"]["responses"]["200"]["content"]["application/json"]
    page_schema = page_schema["schema"]
    response = _signed_get(live, clinic_a, "/api/v1/clinic/inbox")
    assert response.status_code == 200, response.text
    page = response.json()
    jsonschema.Draft202012Validator(page_schema).validate(page)
    envelope_schema = page_schema["properties"]["items"]["items"]["properties"]["envelope"]
    assert (envelope_schema["contentEncoding"], envelope_schema["contentMediaType"]) == ("base64", "application/json")
    [item] = page["items"]
    envelope: Any = msgspec.json.decode(base64.b64decode(item["envelope"], validate=True))
    jsonschema.Draft202012Validator(envelope_schema["contentSchema"]).validate(envelope)
    body_schema = envelope_schema["contentSchema"]["properties"]["body"]["contentSchema"]
    body = msgspec.json.decode(base64.b64decode(envelope["body"], validate=True))
    jsonschema.Draft202012Validator(body_schema).validate(body)
    assert body["reference"] == waiting_referral
    assert [r["key_id"] for r in body["recipients"]] == clinic_a.secrets.encryption_key_ids


def test_signed_clinic_api_answers_as_documented(
    live: LiveServer, clinic_a: EnrolledClinic, waiting_referral: str, tmp_path: Path
) -> None:
    statuses = tmp_path / "statuses.txt"
    result = _schemathesis(
        live.url,
        "--include-path-regex",
        "^/api/v1/clinic/",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
        "response_headers_conformance",
        "--max-examples",
        "40",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "30",  # longer than the longest long poll (wait=25) would hold, should one slip past the hook
        env={
            "SCHEMATHESIS_HOOKS": signed_clinic_requests.__name__,
            signed_clinic_requests.KEY_ID: key_id(clinic_a.secrets.signing_public),
            signed_clinic_requests.SEED: clinic_a.secrets.signing_seed.hex(),
            signed_clinic_requests.STATUSES: str(statuses),
        },
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    answers = Counter(
        (method, path, int(status), fields)
        for method, path, status, fields in (line.split(" ") for line in statuses.read_text().splitlines())
        if (method, path) in CLINIC_OPERATIONS  # not the undocumented methods the coverage phase also tries (405)
    )
    # The signatures held: no answer refused one, and every operation was answered past the signature check
    # (a success, a 422 naming fields, or a key request refused for what it says: 400 with `error`).
    assert not [answer for answer in answers if answer[2] == 401], answers
    past_the_signature = {
        (method, path) for method, path, status, fields in answers if status not in (400, 401) or fields == "error"
    }
    assert past_the_signature == CLINIC_OPERATIONS, answers
    assert answers["GET", "/api/v1/clinic/inbox", 200, "items,more"] > 0, answers  # the waiting referral, validated
    assert httpx.get(f"{live.url}/healthz").status_code == 200


def test_inbox_parameters_stay_as_documented_whatever_the_handler_declares() -> None:
    """Long polling (issue 19) reads `wait` as a string in the handler; the document still says 0–25 seconds."""
    derived = [
        Parameter(name="wait", param_in="query", schema=Schema(type=OpenAPIType.STRING)),
        Parameter(name="limit", param_in="query", schema=Schema(type=OpenAPIType.INTEGER)),
    ]
    operation = InboxOperation(parameters=list(derived), responses={})
    parameters = {p.name: p for p in operation.parameters or [] if isinstance(p, Parameter)}
    assert sorted(parameters) == ["after", "limit", "wait"]
    assert len(operation.parameters or []) == 3
    wait = parameters["wait"].schema
    assert isinstance(wait, Schema)
    assert (wait.type, wait.minimum, wait.maximum) == (OpenAPIType.INTEGER, 0, 25)
