"""A clinic's keys over their life, and continuous intake, through the real programs.

`referral-broker serve` and `worker` against this run's private PostgreSQL and Redis, the operator's
`referral-broker clinic …` commands, and `referral-clinic` as a clinic runs it: a second machine
added and the first one lost, a rotation in the middle of a stream of referrals, revocation, a watch
loop through a broker restart, and FHIR bundles that validate.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from referral_clinic import broker_client
from referral_clinic.session import unlock
from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker, broker  # noqa: F401 - the fixture
from tests.processes import Program, program, run, wait_for_http, wait_for_value

pytestmark = pytest.mark.e2e


def clinic_tool(b: Broker, *args: str, check: bool = True) -> str:
    result = run([program("referral-clinic"), *args], b.env, check=check)
    with (b.folder / "clinic.log").open("a") as log:
        log.write(result.stdout + result.stderr)
    return result.stdout + result.stderr


def operator(b: Broker, *args: str) -> str:
    return run([program("referral-broker"), "clinic", *args], b.env).stdout


def fingerprint_in(output: str) -> str:
    return next(line.split(": ", 1)[1].strip() for line in output.splitlines() if line.startswith("fingerprint: "))


def keys_of(b: Broker, slug: str) -> list[dict[str, str]]:
    listed = json.loads(run([program("referral-broker"), "clinic", "list", "--json"], b.env).stdout)
    keys: list[dict[str, str]] = next(c["keys"] for c in listed if c["slug"] == slug)
    return keys


def submit(b: Broker, clinics: list[str]) -> dict[str, str]:
    response = httpx.post(f"{b.url}/api/v1/referrals", json=referral_json(clinics), timeout=10)
    assert response.status_code == 201, response.text
    receipt: dict[str, str] = response.json()
    return receipt


async def status_of(b: Broker, reference: str) -> tuple[str, bool]:
    conn = await asyncpg.connect(b.database_url)
    try:
        row = await conn.fetchrow(
            """SELECT d.status, d.envelope IS NULL AS dropped FROM deliveries d
               JOIN referrals r ON r.id = d.referral_id WHERE r.reference = $1""",
            reference,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["status"], row["dropped"]


async def test_second_machine_added_then_first_lost_and_revoked(broker: Broker) -> None:  # noqa: F811
    first = broker.clinic("klinikk-a")
    broker.start_worker()
    only_first = submit(broker, ["klinikk-a"])  # sealed to the first machine's key alone

    # A second machine joins: public join file, its own keys, endorsed by the first, verified by phone.
    join = broker.folder / "join.json"
    second = broker.folder / "clinics" / "klinikk-a-2"
    clinic_tool(broker, "key", "export-join", "--dir", str(first), "--out", str(join))
    added = clinic_tool(broker, "key", "add", "--dir", str(second), "--join", str(join))
    fingerprint = fingerprint_in(added)
    assert clinic_tool(broker, "fingerprint", "--dir", str(second)).strip() == fingerprint
    code, output = broker.pull(second, broker.folder / "inbox-2")
    assert code == 1 and f"verify fingerprint {fingerprint}" in output  # pending until the operator verifies
    endorsed = clinic_tool(broker, "key", "endorse", "--dir", str(first), "--request", str(second / "key-request.json"))
    assert fingerprint_in(endorsed) == fingerprint
    operator(broker, "verify", "klinikk-a", "--fingerprint", fingerprint)
    both = submit(broker, ["klinikk-a"])  # now sealed to both machines' keys
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 2)
    conn = await asyncpg.connect(broker.database_url)
    try:
        sealed_to = await conn.fetch("SELECT cardinality(recipient_keys) AS n FROM deliveries ORDER BY created_at")
    finally:
        await conn.close()
    assert [r["n"] for r in sealed_to] == [1, 2]

    # The first machine is lost: revoke its keys. What only it could open is flagged at once.
    lost_keys = [k for k in keys_of(broker, "klinikk-a") if k["state"] == "active" and k["fingerprint"] != fingerprint]
    assert sorted(k["purpose"] for k in lost_keys) == ["encryption", "signing"]
    for key in lost_keys:
        said = operator(broker, "revoke-key", "klinikk-a", key["key_id"])
        if key["purpose"] == "encryption":
            assert "1 waiting referral(s) could be opened only with revoked keys" in said
    assert await status_of(broker, only_first["reference"]) == ("undeliverable", True)

    # The second machine receives what it can open; the flagged one no longer blocks or waits.
    code, output = broker.pull(second, broker.folder / "inbox-2")
    assert code == 0, output
    assert [p.name for p in (broker.folder / "inbox-2").glob("*.json")] == [f"{both['reference']}.json"]
    assert await status_of(broker, both["reference"]) == ("acknowledged", True)

    # The lost machine is shut out; the patient of the flagged referral is asked to send it again.
    code, output = broker.pull(first, broker.folder / "inbox-1")
    assert code == 1 and "HTTP 403" in output
    page = httpx.get(only_first["manage_url"] + "?lang=en", timeout=10).text
    assert "Could not be delivered – please send it again" in page and "Send your request again" in page
    page_nb = httpx.get(only_first["manage_url"] + "?lang=nb", timeout=10).text
    assert "Send forespørselen på nytt" in page_nb
    assert "send it again" not in httpx.get(both["manage_url"] + "?lang=en", timeout=10).text


async def test_rotation_in_the_middle_of_a_stream_loses_nothing(broker: Broker) -> None:  # noqa: F811
    folder = broker.clinic("klinikk-a")
    broker.start_worker()
    inbox = broker.folder / "inbox"
    references = [submit(broker, ["klinikk-a"])["reference"] for _ in range(3)]
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 3)
    code, output = broker.pull(folder, inbox)
    assert code == 0, output
    old_key = next(k["key_id"] for k in keys_of(broker, "klinikk-a") if k["purpose"] == "encryption")

    rotated = clinic_tool(broker, "key", "rotate", "--dir", str(folder))
    fingerprint = fingerprint_in(rotated)
    references += [submit(broker, ["klinikk-a"])["reference"] for _ in range(2)]  # still sealed to the old key
    operator(broker, "verify", "klinikk-a", "--fingerprint", fingerprint)
    states = {k["key_id"]: k["state"] for k in keys_of(broker, "klinikk-a") if k["purpose"] == "encryption"}
    new_key = next(k for k in states if k != old_key)
    assert states == {old_key: "retiring", new_key: "active"}
    references += [submit(broker, ["klinikk-a"])["reference"] for _ in range(3)]  # sealed to the new key only
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 5)
    await wait_for_value(
        broker.database_url,
        f"SELECT count(*) FROM deliveries WHERE recipient_keys = ARRAY['{new_key}']",  # noqa: S608 - our own hex id
        3,
    )

    # The old key is still needed until what was sealed to it is acknowledged: destroying it is refused.
    said = clinic_tool(broker, "key", "destroy", "--dir", str(folder), "--key-id", old_key, "--yes", check=False)
    assert "wait until it is retired" in said

    code, output = broker.pull(folder, inbox)
    assert code == 0, output
    assert f"key {old_key} is retired at the broker" in output  # the tool offers to destroy it
    assert sorted(p.stem for p in inbox.glob("*.json")) == sorted(references)
    status = clinic_tool(broker, "status", "--dir", str(folder))
    assert f"encryption key {old_key}: retired" in status and f"encryption key {new_key}: active" in status
    clinic_tool(broker, "key", "destroy", "--dir", str(folder), "--key-id", old_key, "--yes")
    last = submit(broker, ["klinikk-a"])["reference"]
    await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 1)
    code, output = broker.pull(folder, inbox)
    assert code == 0, output
    assert (inbox / f"{last}.json").exists()

    # FHIR bundles for the journal system, validated with the R4B models.
    from fhir.resources.R4B.bundle import Bundle

    assert "exported 9 FHIR bundle(s)" in clinic_tool(broker, "export", "--dir", str(folder), "--out", str(inbox))
    for path in (inbox / "fhir").glob("*.fhir.json"):
        bundle = Bundle.model_validate_json(path.read_text())
        kinds = [e.resource.get_resource_type() for e in bundle.entry]
        assert kinds == ["ServiceRequest", "Patient", "Organization"]


async def test_watch_keeps_pulling_through_a_broker_restart_and_stops_cleanly(broker: Broker) -> None:  # noqa: F811
    folder = broker.clinic("klinikk-a")
    broker.start_worker()
    inbox = broker.folder / "inbox"
    watcher = Program(
        [
            program("referral-clinic"), "watch", "--dir", str(folder), "--out", str(inbox),
            "--interval", "0.3", "--max-backoff", "1", "--format", "fhir",
        ],
        broker.env,
        broker.folder / "watch.log",
    ).start()  # fmt: skip
    try:
        references = [submit(broker, ["klinikk-a"])["reference"] for _ in range(2)]
        await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'", 2)

        broker.server.stop()  # the broker goes away …
        time.sleep(2)
        broker.server = Program(broker.server.args, broker.env, broker.folder / "server-2.log").start()
        wait_for_http(f"{broker.url}/healthz", broker.server)  # … and comes back
        references += [submit(broker, ["klinikk-a"])["reference"] for _ in range(2)]
        await wait_for_value(broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'", 4)
    finally:
        watcher.signal(signal.SIGTERM)
        assert watcher.process is not None
        code = watcher.process.wait(timeout=20)
        broker.server.stop()  # the fixture stops the first server only; this one is ours
    log = watcher.output()
    assert code == 0, log
    assert "cannot reach the broker" in log and "next try in" in log  # it saw the restart and backed off
    assert "stopped after" in log and "Traceback" not in log
    assert sorted(p.stem for p in inbox.glob("*.json")) == sorted(references)
    assert sorted(p.name for p in (inbox / "fhir").iterdir()) == sorted(f"{r}.fhir.json" for r in references)
    ledger = [json.loads(line) for line in (folder / "ledger.jsonl").read_text().splitlines()]
    assert sorted(e["reference"] for e in ledger if e["event"] == "written") == sorted(references)  # no duplicate
    assert not list(Path(inbox).glob(".incoming-*"))


def test_a_clinic_computer_whose_clock_is_off_is_told_so_by_the_real_broker(
    broker: Broker,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real server's answers carry `Date` (uvicorn), from which the tool tells the clock is off."""
    folder = broker.clinic("klinikk-a")
    session = unlock(folder, PASSPHRASE)
    for off, said in ((timedelta(minutes=7), "7 minutes fast"), (-timedelta(minutes=7), "7 minutes slow")):
        monkeypatch.setattr(broker_client, "local_clock", lambda off=off: datetime.now(UTC) + off)
        with session.client() as client, pytest.raises(broker_client.ClockOff) as refused:
            client.status()
        assert refused.value.status == 401 and said in str(refused.value)
    monkeypatch.setattr(broker_client, "local_clock", lambda: datetime.now(UTC))
    with session.client() as client:
        assert client.status().clinic == "klinikk-a"
