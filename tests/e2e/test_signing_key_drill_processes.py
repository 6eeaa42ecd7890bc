"""The signing-key drill (docs/operations.md, "Rotating the broker's signing key"), through the real programs.

`referral-broker serve` and `worker` keep running throughout (never restarted); clinic A runs
`referral-clinic watch`, clinic B pulls by hand now and then; referrals are submitted over HTTP all the
while. The operator rotates, activates and retires the signing key with the real commands, including a
step refused out of order. At the end every referral reached both clinics, nothing is undeliverable, the
clinics trust only the new key, and the audit trail records each step without any key material.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import threading
from pathlib import Path

import asyncpg
import httpx
import pytest

from referral_protocol.encoding import b64
from referral_protocol.envelope import BrokerSigner
from tests.conftest import referral_json
from tests.e2e.test_pipeline_processes import Broker, broker  # noqa: F401 - the fixture
from tests.processes import Program, program, run, wait_for_value

pytestmark = pytest.mark.e2e


def keys(b: Broker, *args: str, check: bool = True) -> tuple[int, str]:
    result = run([program("referral-broker"), "keys", *args], b.env, check=check)
    with (b.folder / "operator.log").open("a") as log:
        log.write(result.stdout + result.stderr)
    return result.returncode, result.stdout + result.stderr


def signing_status(b: Broker) -> dict[str, object]:
    status: dict[str, object] = json.loads(keys(b, "signing-status", "--json")[1])
    return status


def pinned(b: Broker) -> dict[str, object]:
    clinics = signing_status(b)["clinics"]
    assert isinstance(clinics, list)
    return {c["slug"]: c["pinned_at"] for c in clinics}


class Submitter(threading.Thread):
    """Submits a referral to both clinics every ~0.2 s until stopped; remembers every reference."""

    def __init__(self, b: Broker) -> None:
        super().__init__(daemon=True)
        self.url = b.url
        self.references: list[str] = []
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop_event.is_set():
                response = client.post(f"{self.url}/api/v1/referrals", json=referral_json(["klinikk-a", "klinikk-b"]))
                if response.status_code == 201:
                    self.references.append(response.json()["reference"])
                else:
                    self.errors.append(f"{response.status_code} {response.text[:200]}")
                self._stop_event.wait(0.2)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


async def _receipt_signers(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return {r["signer"] for r in await conn.fetch("SELECT DISTINCT signer FROM dispatch_receipts")}
    finally:
        await conn.close()


async def _wait_for(predicate: object, seconds: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.3)
    raise AssertionError("the drill did not get there in time")


async def test_the_signing_key_is_rotated_while_clinics_pull_and_referrals_arrive(broker: Broker) -> None:  # noqa: F811
    keys_dir = Path(broker.env["REFERRAL_BROKER_KEYS_DIR"])
    old = BrokerSigner(base64.b64decode((keys_dir / "broker-signing.key").read_text()))
    folder_a, folder_b = broker.clinic("klinikk-a"), broker.clinic("klinikk-b")
    inbox_a, inbox_b = broker.folder / "inbox-a", broker.folder / "inbox-b"
    broker.start_worker()
    watcher = Program(
        [program("referral-clinic"), "watch", "--dir", str(folder_a), "--out", str(inbox_a), "--interval", "0.5"],
        broker.env,
        broker.folder / "watch-a.log",
    ).start()
    submitter = Submitter(broker)
    submitter.start()
    try:
        await _wait_for(lambda: len(submitter.references) >= 3)
        code, said = broker.pull(folder_b, inbox_b)
        assert code == 0, said

        # 1. A new key, announced; refused steps say why and change nothing.
        code, said = keys(broker, "activate-signing", check=False)  # nothing to activate yet
        assert code == 3 and "no new signing key to activate" in said
        code, said = keys(broker, "rotate-signing")
        assert "announced to 2 clinic(s)" in said
        new_id = str(signing_status(broker)["next"])
        new = BrokerSigner(base64.b64decode((keys_dir / "broker-signing.next.key").read_text()))
        assert new.key_id == new_id
        code, said = keys(broker, "rotate-signing", check=False)
        assert code == 3 and "already under way" in said
        code, said = keys(broker, "retire-signing", check=False)
        assert code == 3 and "not active yet" in said

        await _wait_for(lambda: pinned(broker)["klinikk-a"] is not None)  # the watch pinned it by itself
        assert pinned(broker)["klinikk-b"] is None
        code, said = broker.pull(folder_b, inbox_b)
        assert code == 0 and f"announced a new signing key {new_id}" in said, said
        assert pinned(broker)["klinikk-b"] is not None

        # 2. Activated, with serve and worker running: they take the new key by themselves.
        keys(broker, "activate-signing")
        seen = len(submitter.references)
        await _wait_for(lambda: len(submitter.references) >= seen + 5)
        await _wait_for_signer(broker.database_url, new_id)
        code, said = broker.pull(folder_b, inbox_b)
        assert code == 0, said

        # 3. Retired: every active clinic has pinned the new key, so it is not refused.
        code, said = keys(broker, "retire-signing")
        assert f"retired signing key {old.key_id}" in said and "WARNING" not in said
        assert not (keys_dir / "broker-signing.previous.key").exists()
        seen = len(submitter.references)
        await _wait_for(lambda: len(submitter.references) >= seen + 5)
    finally:
        submitter.stop()

    try:
        assert submitter.errors == []
        references = set(submitter.references)
        total = len(references) * 2
        await wait_for_value(  # every copy dispatched
            broker.database_url,
            "SELECT count(*) FROM deliveries WHERE status IN ('available', 'acknowledged')",
            total,
            90,
        )
        code, said = broker.pull(folder_b, inbox_b)
        assert code == 0, said
        await wait_for_value(
            broker.database_url, "SELECT count(*) FROM deliveries WHERE status = 'acknowledged'", total, 90
        )
    finally:
        watcher.signal(signal.SIGTERM)
        assert watcher.process is not None
        watcher.process.wait(timeout=20)

    # Nothing lost: every referral is on disk at both clinics; nothing became undeliverable.
    assert {p.stem for p in inbox_a.glob("RB-*.json")} == references
    assert {p.stem for p in inbox_b.glob("RB-*.json")} == references
    assert await _count(broker.database_url, "SELECT count(*) FROM deliveries WHERE status <> 'acknowledged'") == 0

    # The clinics trust the new key alone now.
    for folder in (folder_a, folder_b):
        config = json.loads((folder / "config.json").read_text())
        assert config["broker_key"] == f"ed25519:{b64(new.public_key)}"
        assert json.loads((folder / "broker-keys.json").read_text())["keys"] == []

    # The audit trail: each step, by key id; its chain intact; no key material there or in any log.
    conn = await asyncpg.connect(broker.database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, subject, details::text AS details FROM audit_events "
            "WHERE action LIKE 'broker_key.%' ORDER BY id"
        )
        everything = "\n".join(r["details"] for r in await conn.fetch("SELECT details::text FROM audit_events"))
    finally:
        await conn.close()
    steps = [r["action"] for r in rows if r["action"] != "broker_key.statement_acknowledged"]
    assert steps == ["broker_key.announced", "broker_key.activated", "broker_key.retired"]
    assert {r["subject"] for r in rows if r["action"] == "broker_key.statement_acknowledged"} == {
        "klinikk-a",
        "klinikk-b",
    }
    run([program("referral-broker"), "audit", "verify"], broker.env)
    logs = "\n".join(p.read_text(errors="replace") for p in broker.folder.glob("*.log"))
    for secret in (old.seed, new.seed):
        assert b64(secret) not in everything and b64(secret) not in logs
    assert b64(old.public_key) not in everything  # key ids only


async def _count(database_url: str, sql: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        value: int = await conn.fetchval(sql)
        return value
    finally:
        await conn.close()


async def _wait_for_signer(database_url: str, signer: str) -> None:
    for _ in range(200):
        if signer in await _receipt_signers(database_url):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"no dispatch receipt signed by {signer}")
