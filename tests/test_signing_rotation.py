"""The broker's signing key rotated with an overlap (issue 25, decision 0071): announce, activate, retire,
and every step refused when out of order or given a bad key file, with nothing half-done."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.cli import signing_keys as signing_cli
from referral_broker.crypto import signing_keys
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.crypto.signing_keys import SigningKeyProblem, SigningKeyring
from referral_broker.services import clinic_inbox, dispatch, inbox_waiting, signing_rotation
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.services.signing_rotation import RotationRefused
from referral_broker.store import clinics
from referral_broker.web.app import create_app
from referral_protocol.encoding import b64, key_id
from referral_protocol.enrolment import AckRequest, InboxItem
from referral_protocol.envelope import open_envelope, signer_of, verify
from referral_protocol.key_change import KEY_CHANGE_KIND, KeyChangeAction, broker_key_fingerprint, check_statement
from tests.conftest import EnrolledClinic, RecordingDoorbell, enrol_clinic, referral_json


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A keys folder of this test's own: rotations change it."""
    folder = tmp_path / "keys"
    init_keys(folder)
    return folder


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(settings, doorbell_factory=lambda s: RecordingDoorbell())
    async with AsyncTestClient(app=app, base_url="http://testserver.local") as c:
        yield c


async def _submit(client: AsyncTestClient[Any], broker: BrokerContext, slugs: list[str]) -> str:
    response = await client.post("/api/v1/referrals", json=referral_json(slugs))
    assert response.status_code == 201, response.text
    reference: str = response.json()["reference"]
    await dispatch.dispatch_referral(
        broker, await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", reference)
    )
    return reference


async def _inbox(broker: BrokerContext, slug: str, limit: int = 100) -> list[InboxItem]:
    row = await clinics.by_slug(broker.pool, slug)
    assert row is not None
    return (await clinic_inbox.list_inbox(broker, row, limit, "start")).items


async def _ack(broker: BrokerContext, slug: str, ids: list[str]) -> list[str]:
    row = await clinics.by_slug(broker.pool, slug)
    assert row is not None
    return (await clinic_inbox.acknowledge(broker, row, AckRequest(delivery_ids=ids))).acknowledged


def _open_statement(item: InboxItem, clinic: EnrolledClinic, broker_key: bytes) -> Any:
    body, padded_off = open_envelope(
        item.envelope, broker_key=broker_key, clinic=clinic.slug, private_keys=clinic.secrets.encryption_secrets
    )
    assert body.kind == KEY_CHANGE_KIND
    return check_statement(padded_off, signer=key_id(broker_key), clinic=clinic.slug, statement_id=item.delivery_id)


async def test_a_rotation_announced_activated_and_retired_loses_nothing(
    client: AsyncTestClient[Any], broker: BrokerContext, keys_dir: Path
) -> None:
    a = await enrol_clinic(broker, "klinikk-a")
    b = await enrol_clinic(broker, "klinikk-b")
    old = broker.keys.signer
    await _submit(client, broker, ["klinikk-a", "klinikk-b"])  # signed by the old key, waits at both

    announced = await signing_rotation.rotate(broker)
    assert announced.old_key_id == old.key_id and announced.statements == 2 and not announced.resumed
    assert broker.keys.signer.key_id == old.key_id  # announced, not signing
    new_key = signing_keys.read_state(keys_dir).next
    assert new_key is not None and new_key.key_id == announced.new_key_id
    assert announced.fingerprint == broker_key_fingerprint(new_key.public_key)
    with pytest.raises(RotationRefused, match="already under way"):
        await signing_rotation.rotate(broker)

    # The statement comes first, outside the page's limit, signed by the old key, carrying the new one.
    items = await _inbox(broker, "klinikk-a", limit=1)
    assert len(items) == 2
    statement = _open_statement(items[0], a, old.public_key)
    assert statement.action == KeyChangeAction.ANNOUNCE
    assert statement.old_key == old.public_key and statement.new_key == new_key.public_key
    assert await _ack(broker, "klinikk-b", [items[0].delivery_id]) == []  # not B's statement: unknown to B
    assert await _ack(broker, "klinikk-a", [items[0].delivery_id]) == [items[0].delivery_id]
    assert len(await _inbox(broker, "klinikk-a")) == 2  # still served after it is acknowledged: every machine sees it

    pins = {p.slug: p.acknowledged_at for p in (await signing_rotation.status(broker)).pins}
    assert pins["klinikk-a"] is not None and pins["klinikk-b"] is None

    old_id, new_id, unpinned = await signing_rotation.activate(broker)
    assert (old_id, new_id) == (old.key_id, new_key.key_id) and [p.slug for p in unpinned] == ["klinikk-b"]
    assert broker.keys.signer.key_id == new_key.key_id  # this process re-read the folder
    assert (keys_dir / "broker.pub").read_text().strip() == f"ed25519:{b64(new_key.public_key)}"
    await _submit(client, broker, ["klinikk-a"])  # the web process signs with the new key too
    signers = [signer_of(i.envelope) for i in await _inbox(broker, "klinikk-a")]
    assert signers == [old.key_id, old.key_id, new_key.key_id]
    with pytest.raises(RotationRefused, match="nothing to activate"):
        await signing_rotation.activate(broker)

    with pytest.raises(RotationRefused, match="klinikk-b"):
        await signing_rotation.retire(broker)
    assert (keys_dir / "broker-signing.previous.key").exists()  # refused: nothing changed

    retired = await signing_rotation.retire(broker, force=True)
    assert retired.forced == ["klinikk-b"] and retired.resigned == 2 and retired.statements == 2
    assert not (keys_dir / "broker-signing.previous.key").exists()
    assert signing_keys.read_state(keys_dir).phase == "steady"
    with pytest.raises(RotationRefused, match="already retired"):
        await signing_rotation.retire(broker)

    # Everything waiting verifies with the new key now, except the announcement (the old key's word).
    items_b = await _inbox(broker, "klinikk-b")
    assert [signer_of(i.envelope) for i in items_b] == [old.key_id, new_key.key_id, new_key.key_id]
    assert _open_statement(items_b[0], b, old.public_key).action == KeyChangeAction.ANNOUNCE
    assert _open_statement(items_b[1], b, new_key.public_key).action == KeyChangeAction.RETIRE
    referral = verify(items_b[2].envelope, new_key.public_key)
    assert referral.kind == "referral"

    # The audit trail names each step by key ids, never key material.
    rows = await broker.pool.fetch("SELECT action, details::text AS details FROM audit_events ORDER BY id")
    steps = [r["action"] for r in rows if r["action"].startswith("broker_key.")]
    assert steps == [
        "broker_key.announced",
        "broker_key.statement_acknowledged",
        "broker_key.activated",
        "broker_key.retired",
    ]
    everything = " ".join(r["details"] for r in rows)
    for secret in (old.seed, new_key.seed, old.public_key, new_key.public_key):
        assert b64(secret) not in everything and secret.hex() not in everything


async def test_steps_out_of_order_are_refused_and_change_nothing(broker: BrokerContext, keys_dir: Path) -> None:
    await enrol_clinic(broker, "klinikk-a")
    before = sorted(p.name for p in keys_dir.iterdir())
    with pytest.raises(RotationRefused, match="no new signing key to activate"):
        await signing_rotation.activate(broker)
    with pytest.raises(RotationRefused, match="no previous signing key"):
        await signing_rotation.retire(broker)
    assert sorted(p.name for p in keys_dir.iterdir()) == before

    await signing_rotation.rotate(broker)
    with pytest.raises(RotationRefused, match="not active yet"):
        await signing_rotation.retire(broker, force=True)
    await signing_rotation.activate(broker)
    with pytest.raises(RotationRefused, match="still in its overlap"):
        await signing_rotation.rotate(broker)
    assert await broker.pool.fetchval("SELECT count(*) FROM broker_key_changes") == 1


async def test_a_missing_or_wrong_key_file_is_refused_with_a_clear_message(
    broker: BrokerContext, keys_dir: Path
) -> None:
    signing = keys_dir / "broker-signing.key"
    kept = signing.read_bytes()
    signing.unlink()
    with pytest.raises(RotationRefused, match=r"broker-signing\.key is missing; run `referral-broker keys init`"):
        await signing_rotation.rotate(broker)
    signing.write_bytes(kept)

    nxt = keys_dir / "broker-signing.next.key"
    nxt.write_text("not a key\n")
    with pytest.raises(RotationRefused, match=r"next\.key is not a base64 Ed25519 seed"):
        await signing_rotation.activate(broker)
    nxt.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(RotationRefused, match="32-byte"):
        await signing_rotation.activate(broker)
    from devstack.protocol_vectors import BROKER_SIGNING_SEED

    nxt.write_text(base64.b64encode(BROKER_SIGNING_SEED).decode())
    with pytest.raises(RotationRefused, match="published test key"):
        await signing_rotation.activate(broker)
    assert signing.read_bytes() == kept  # the active key was never touched
    nxt.unlink()
    assert await broker.pool.fetchval("SELECT count(*) FROM broker_key_changes") == 0


async def test_a_new_key_never_announced_is_not_activated(broker: BrokerContext, keys_dir: Path) -> None:
    """A rotation killed after making the key, before announcing it: activating is refused, and running
    rotate-signing again finishes the announcement with the same key."""
    state, made = signing_keys.make_next(keys_dir)
    with pytest.raises(RotationRefused, match="never announced"):
        await signing_rotation.activate(broker)
    assert broker.keys.signer.key_id == state.active.key_id
    resumed = await signing_rotation.rotate(broker)
    assert resumed.resumed and resumed.new_key_id == made.key_id


def test_an_activation_killed_half_way_reads_as_before_or_after_and_finishes(tmp_path: Path) -> None:
    init_keys(tmp_path)
    ring = SigningKeyring(tmp_path)
    old = ring.active
    _, new = signing_keys.make_next(tmp_path)
    # killed after copying the old key to `previous`, before switching: still announced, old signs
    (tmp_path / "broker-signing.previous.key").write_text(b64(old.seed))
    assert signing_keys.read_state(tmp_path).phase == "announced" and ring.active.key_id == old.key_id
    # killed after switching, before the clean-up: activated
    (tmp_path / "broker-signing.key").write_text(b64(new.seed))
    state = signing_keys.read_state(tmp_path)
    assert state.phase == "overlap" and state.previous is not None and state.previous.key_id == old.key_id
    assert ring.active.key_id == new.key_id  # a running process takes it at its next use
    with pytest.raises(SigningKeyProblem, match="already active"):
        signing_keys.switch_to_next(tmp_path)  # nothing left to do but what read_state already sees


def test_a_running_process_keeps_its_key_when_the_folder_is_damaged(tmp_path: Path) -> None:
    init_keys(tmp_path)
    ring = SigningKeyring(tmp_path)
    before = ring.active.key_id
    (tmp_path / "broker-signing.key").write_text("damaged")
    assert ring.active.key_id == before


async def test_the_commands_say_why_they_refuse(
    broker: BrokerContext, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from referral_broker.cli.broker import main

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("REFERRAL_BROKER_PUBLIC_URL", "https://broker.test")

    async def cli(*args: str) -> int:
        return await asyncio.to_thread(main, ["keys", *args])  # the command runs its own event loop

    await enrol_clinic(broker, "klinikk-a")
    assert await cli("activate-signing") == signing_cli.EXIT_REFUSED
    assert "refused: there is no new signing key to activate" in capsys.readouterr().err
    assert await cli("rotate-signing") == 0
    out = capsys.readouterr().out
    assert "announced to 1 clinic(s)" in out and "fingerprint of the new key" in out
    assert await cli("rotate-signing") == signing_cli.EXIT_REFUSED
    assert "already under way" in capsys.readouterr().err
    assert await cli("signing-status", "--json") == 0
    status = json.loads(capsys.readouterr().out)
    assert status["phase"] == "announced" and status["active"] == broker.keys.signer.key_id
    assert await cli("retire-signing") == signing_cli.EXIT_REFUSED
    assert "not active yet" in capsys.readouterr().err

    async def clinic_list(*args: str) -> str:
        assert await asyncio.to_thread(main, ["clinic", "list", *args]) == 0
        return capsys.readouterr().out

    assert "new broker key: NOT pinned" in await clinic_list()
    assert json.loads(await clinic_list("--json"))[0]["broker_key_pinned_at"] is None
    items = await _inbox(broker, "klinikk-a")
    await _ack(broker, "klinikk-a", [items[0].delivery_id])
    assert "new broker key: pinned 20" in await clinic_list()
    assert json.loads(await clinic_list("--json"))[0]["broker_key_pinned_at"] is not None


async def test_waiting_envelopes_are_signed_again_batch_by_batch(
    client: AsyncTestClient[Any], broker: BrokerContext, keys_dir: Path
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    old = broker.keys.signer
    for _ in range(3):
        await _submit(client, broker, ["klinikk-a"])
    await signing_rotation.rotate(broker)
    await signing_rotation.activate(broker)
    new = broker.keys.signer
    async with broker.pool.acquire() as conn, conn.transaction():
        assert await signing_rotation._resign_all(conn, old.key_id, new, batch=1) == 3
    items = [i for i in await _inbox(broker, "klinikk-a") if signer_of(i.envelope) == new.key_id]
    assert len(items) == 3 and all(verify(i.envelope, new.public_key).kind == "referral" for i in items)


async def test_a_long_poll_is_not_woken_again_and_again_by_a_statement_the_clinic_has_pinned(
    client: AsyncTestClient[Any], broker: BrokerContext, keys_dir: Path
) -> None:
    """While a rotation lasts (days), a clinic that has acknowledged the statement must not have every long poll
    answered at once by it: that would make `watch` ask without pause. A plain reading still serves it, for the
    clinic's other machines."""
    await enrol_clinic(broker, "klinikk-lang")
    row = await clinics.by_slug(broker.pool, "klinikk-lang")
    assert row is not None
    await signing_rotation.rotate(broker)
    waiters = inbox_waiting.InboxWaiters(max_held=10)
    first = await inbox_waiting.list_or_wait(broker, waiters, row, 1, None, 1)
    assert len(first.items) == 1  # not acknowledged yet: news, answered at once
    await _ack(broker, "klinikk-lang", [first.items[0].delivery_id])

    loop = asyncio.get_running_loop()
    started = loop.time()
    held = await inbox_waiting.list_or_wait(broker, waiters, row, 1, None, 1)
    assert held.items == [] and loop.time() - started >= 0.9  # it waited its whole second: nothing new
    assert [i.delivery_id for i in await _inbox(broker, "klinikk-lang")] == [first.items[0].delivery_id]
    # When something new comes, the answer is whole: the statement first, for a machine that has not seen it.
    await _submit(client, broker, ["klinikk-lang"])
    woken = await inbox_waiting.list_or_wait(broker, waiters, row, 10, None, 1)
    assert len(woken.items) == 2 and woken.items[0].delivery_id == first.items[0].delivery_id
