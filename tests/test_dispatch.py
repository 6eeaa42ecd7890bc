"""Dispatch and reconciliation: each referral made available exactly once, whatever repeats or races."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import msgspec
import pytest

from referral_broker.services import dispatch, intake, reconcile
from referral_broker.services.context import BrokerContext
from referral_broker.services.dispatch import DispatchOutcome
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import audit
from referral_protocol.referral import ReferralRequest
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json


async def _submit(broker: BrokerContext, clinics: list[str]) -> uuid.UUID:
    receipt = await intake.submit(broker, msgspec.convert(referral_json(clinics), ReferralRequest))
    rid: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    return rid


async def test_dispatch_makes_every_delivery_available_once(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    await enrol_clinic(broker, "b")
    rid = await _submit(broker, ["a", "b"])
    assert await dispatch.dispatch_referral(broker, rid) == DispatchOutcome.DISPATCHED
    assert await dispatch.dispatch_referral(broker, rid) == DispatchOutcome.NOTHING_TO_DO
    rows = await broker.pool.fetch("SELECT status, attempts, dispatched_at FROM deliveries")
    assert [(r["status"], r["attempts"]) for r in rows] == [("available", 1), ("available", 1)]
    assert await broker.pool.fetchval("SELECT count(*) FROM dispatch_receipts") == 2


async def test_racing_dispatchers_make_each_delivery_available_once(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    rids = [await _submit(broker, ["a"]) for _ in range(10)]
    outcomes = await asyncio.gather(*(dispatch.dispatch_referral(broker, r) for r in rids for _ in range(4)))
    # A run may take others along, so fewer runs report their own referral dispatched; none twice.
    assert 1 <= outcomes.count(DispatchOutcome.DISPATCHED) <= 10
    assert await broker.pool.fetchval("SELECT count(*) FROM deliveries WHERE attempts = 1 AND status='available'") == 10
    assert await broker.pool.fetchval("SELECT count(*) FROM dispatch_receipts") == 10
    audited = await broker.pool.fetch("SELECT subject FROM audit_events WHERE action = 'delivery.dispatched'")
    assert sorted(r["subject"] for r in audited) == sorted(str(r) for r in rids)  # one event a referral
    assert (await audit.verify_chain(broker.pool))[1] is None


async def test_a_run_withdraws_the_jobs_of_the_referrals_it_took_along(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    rids = [await _submit(broker, ["a"]) for _ in range(4)]
    doorbell = RecordingDoorbell()
    broker.doorbell = doorbell
    assert await dispatch.dispatch_referral(broker, rids[0]) == DispatchOutcome.DISPATCHED
    assert sorted(doorbell.withdrawn) == sorted((JOB_DISPATCH, r) for r in rids[1:])  # not its own
    assert await dispatch.dispatch_referral(broker, rids[1]) == DispatchOutcome.NOTHING_TO_DO
    assert len(doorbell.withdrawn) == 3  # a run that found nothing to do takes nothing along


async def test_a_doorbell_that_cannot_withdraw_changes_nothing_done(broker: BrokerContext) -> None:
    class Unreachable(RecordingDoorbell):
        async def withdraw(self, job: str, subject_ids: list[uuid.UUID]) -> None:
            raise ConnectionError("redis is away")

    await enrol_clinic(broker, "a")
    rids = [await _submit(broker, ["a"]) for _ in range(3)]
    broker.doorbell = Unreachable()
    assert await dispatch.dispatch_referral(broker, rids[0]) == DispatchOutcome.DISPATCHED
    assert await broker.pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'available'") == 3
    assert [await dispatch.dispatch_referral(broker, r) for r in rids[1:]] == [DispatchOutcome.NOTHING_TO_DO] * 2


async def test_reconciler_rings_again_for_every_undispatched_referral(
    broker: BrokerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await enrol_clinic(broker, "a")
    rids = {await _submit(broker, ["a"]) for _ in range(3)}
    monkeypatch.setattr(dispatch, "BATCH", 1)  # this run takes no other referral along
    await dispatch.dispatch_referral(broker, next(iter(rids)))
    doorbell = RecordingDoorbell()
    broker.doorbell = doorbell
    assert await reconcile.reconcile(broker) == 2
    assert {s for _, s in doorbell.rung} == rids - {next(iter(rids))}
    assert {j for j, _ in doorbell.rung} == {JOB_DISPATCH}


async def test_the_periodic_reconciler_leaves_just_made_rows_to_the_ring_that_made_them(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    rid = await _submit(broker, ["a"])
    doorbell = RecordingDoorbell()
    broker.doorbell = doorbell
    assert await reconcile.reconcile(broker, grace=reconcile.GRACE) == 0
    start = broker.clock()
    broker.clock = lambda: start + reconcile.GRACE + timedelta(seconds=1)
    assert await reconcile.reconcile(broker, grace=reconcile.GRACE) == 1
    assert doorbell.rung == [(JOB_DISPATCH, rid)]


async def test_delivery_becomes_dead_after_the_allowed_tries_and_others_are_unaffected(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "a")
    poison = await _submit(broker, ["a"])
    healthy = await _submit(broker, ["a"])
    # Simulate tries that failed before committing anything: only the attempt counter moved.
    await broker.pool.execute(
        "UPDATE outbox SET attempts = $2 WHERE subject_id = $1", poison, broker.settings.dispatch_max_tries
    )
    assert await dispatch.dispatch_referral(broker, poison) == DispatchOutcome.DEAD
    assert await dispatch.dispatch_referral(broker, healthy) == DispatchOutcome.DISPATCHED
    states = dict(await broker.pool.fetch("SELECT referral_id, status FROM deliveries"))
    assert states == {poison: "dead", healthy: "available"}
    assert await dispatch.dispatch_referral(broker, poison) == DispatchOutcome.NOTHING_TO_DO


async def test_audit_chain_records_enrolment_and_dispatch_and_detects_tampering(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "a")
    await dispatch.dispatch_referral(broker, await _submit(broker, ["a"]))
    checked, broken = await audit.verify_chain(broker.pool)
    assert broken is None and checked == 3  # enrolled, verified, dispatched
    actions = [e["action"] for e in reversed(await audit.recent(broker.pool))]
    assert actions == ["clinic.enrolled", "clinic.verified", "delivery.dispatched"]
    await broker.pool.execute("UPDATE audit_events SET actor = 'someone-else' WHERE id = 2")
    _, broken = await audit.verify_chain(broker.pool)
    assert broken is not None and broken.event_id == 2
