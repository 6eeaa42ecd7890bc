"""Issue 20 items 5 and 6 with the real programs: `referral-clinic init` signs the organisation number into
the enrolment file, `referral-broker clinic add` stores it, the real server refuses a need with control
characters, and the clinic's FHIR export names the Organization by the Norwegian identifiers."""

from __future__ import annotations

import json

import asyncpg
import httpx

from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import Broker, broker
from tests.processes import program, run, wait_for_value

__all__ = ["broker"]


async def test_a_clinic_is_enrolled_and_exported_by_its_organisation_number(broker: Broker) -> None:
    folder = broker.clinic("klinikk-a")
    conn = await asyncpg.connect(broker.database_url)
    try:
        row = await conn.fetchrow("SELECT organisation_number, her_id FROM clinics WHERE slug = 'klinikk-a'")
    finally:
        await conn.close()
    assert dict(row) == {"organisation_number": "987654325", "her_id": None}

    refused = httpx.post(
        f"{broker.url}/api/v1/referrals",
        json=referral_json(["klinikk-a"], description="Vondt i kneet\x1b[2J\x07"),
        timeout=10,
    )
    assert refused.status_code == 422
    assert [(e["field"], e["code"]) for e in refused.json()["errors"]] == [("need.description", "control_characters")]

    broker.start_worker()
    reference = broker.submit(["klinikk-a"], description="Vondt i kneet.\r\n\tVerre om morgenen.")
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 1)
    out = broker.folder / "inbox"
    pulled = run(
        [program("referral-clinic"), "pull", "--dir", str(folder), "--out", str(out), "--format", "fhir"], broker.env
    )
    assert reference in pulled.stdout
    bundle = json.loads((out / "fhir" / f"{reference}.fhir.json").read_text())
    service_request, _, organization = (e["resource"] for e in bundle["entry"])
    assert service_request["note"][0]["text"] == "Vondt i kneet.\r\n\tVerre om morgenen."
    assert organization["meta"]["profile"] == ["http://hl7.no/fhir/StructureDefinition/no-basis-Organization"]
    assert organization["identifier"][0] == {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "987654325"}
