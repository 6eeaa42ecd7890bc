"""Anonymisation five calendar months after dispatch (security.md control 17), with an injected clock."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from referral_broker.cli.broker import main
from referral_broker.domain.retention import months_before
from referral_broker.services import clinic_inbox, dispatch, intake, retention
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics
from referral_broker.store.retention import DUE_BATCH_SQL
from referral_protocol.referral import ReferralRequest
from tests.conftest import enrol_clinic, referral_json
from tests.processes import program

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_calendar_months_clamp_to_the_end_of_the_month() -> None:
    assert months_before(datetime(2026, 7, 31, 10, tzinfo=UTC), 5) == datetime(2026, 2, 28, 11, tzinfo=UTC)
    # 10 August 14:00 in Oslo is summer time; 10 March 14:00 in Oslo is winter time (13:00 UTC)
    assert months_before(datetime(2026, 8, 10, 12, tzinfo=UTC), 5) == datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert months_before(datetime(2027, 1, 15, tzinfo=UTC), 5).month == 8


async def _referral(broker: BrokerContext, clinics_: list[str], at: datetime) -> uuid.UUID:
    broker.clock = lambda: at
    receipt = await intake.submit(broker, msgspec.convert(referral_json(clinics_), ReferralRequest))
    rid: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    return rid


async def _dispatch(broker: BrokerContext, rid: uuid.UUID, at: datetime) -> None:
    broker.clock = lambda: at
    await dispatch.dispatch_referral(broker, rid)


async def _state(broker: BrokerContext, rid: uuid.UUID) -> dict[str, object]:
    row = await broker.pool.fetchrow(
        """SELECT contact_ct IS NOT NULL AS contact, email_bidx IS NOT NULL AS email_index,
                  phone_bidx IS NOT NULL AS phone_index, manage_token_hash IS NOT NULL AS token,
                  reference IS NOT NULL AS reference, anonymised_at IS NOT NULL AS anonymised, category
           FROM referrals WHERE id = $1""",
        rid,
    )
    deliveries = await broker.pool.fetch(
        "SELECT status, envelope IS NOT NULL AS envelope FROM deliveries WHERE referral_id = $1 ORDER BY status", rid
    )
    return {**dict(row), "deliveries": [(d["status"], d["envelope"]) for d in deliveries]}


INTACT = {"contact": True, "email_index": True, "phone_index": True, "token": True, "reference": True,
          "anonymised": False, "category": None}  # fmt: skip
GONE = {"contact": False, "email_index": False, "phone_index": False, "token": False, "reference": False,
        "anonymised": True, "category": "physiotherapy"}  # fmt: skip


async def test_untouched_at_five_months_minus_a_day_anonymised_at_five_months_plus_a_day(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "a")
    await enrol_clinic(broker, "b")
    rid = await _referral(broker, ["a", "b"], T0)
    await _dispatch(broker, rid, T0)
    clinic_a = await clinics.by_slug(broker.pool, "a")
    assert clinic_a is not None
    page = await clinic_inbox.list_inbox(broker, clinic_a, 10)
    from referral_protocol.enrolment import AckRequest

    await clinic_inbox.acknowledge(broker, clinic_a, AckRequest([page.items[0].delivery_id]))
    five_months = datetime(2026, 8, 10, 12, 0, tzinfo=UTC)

    run = await retention.anonymise_expired(broker, now=five_months - timedelta(days=1))
    assert run.anonymised == 0
    assert await _state(broker, rid) == {**INTACT, "deliveries": [("acknowledged", False), ("available", True)]}

    run = await retention.anonymise_expired(broker, now=five_months + timedelta(days=1))
    assert (run.anonymised, run.expired_deliveries) == (1, 1)
    # B never picked it up: expired, its ciphertext gone. A's acknowledgement stays as the outcome.
    assert await _state(broker, rid) == {**GONE, "deliveries": [("acknowledged", False), ("expired", False)]}
    assert await broker.pool.fetchval("SELECT count(*) FROM dispatch_receipts") == 0
    times = await broker.pool.fetchrow("SELECT created_at, consent_at, retention_anchor FROM referrals")
    assert all(t == t.replace(hour=0, minute=0, second=0, microsecond=0) for t in times.values())

    again = await retention.anonymise_expired(broker, now=five_months + timedelta(days=1))
    assert again.anonymised == 0
    assert await _state(broker, rid) == {**GONE, "deliveries": [("acknowledged", False), ("expired", False)]}


async def test_never_dispatched_referral_counts_from_its_creation(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    rid = await _referral(broker, ["a"], T0)
    assert (await retention.anonymise_expired(broker, now=T0 + timedelta(days=152))).anonymised == 0
    assert (await retention.anonymise_expired(broker, now=T0 + timedelta(days=155))).anonymised == 1
    assert (await _state(broker, rid))["deliveries"] == [("expired", False)]
    assert await broker.pool.fetchval("SELECT count(*) FROM outbox WHERE done_at IS NULL") == 0


async def test_the_last_dispatch_starts_the_five_months(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    rid = await _referral(broker, ["a"], T0)
    await _dispatch(broker, rid, T0 + timedelta(days=40))  # e.g. retried after a fault
    assert (await retention.anonymise_expired(broker, now=T0 + timedelta(days=160))).anonymised == 0
    assert (await retention.anonymise_expired(broker, now=T0 + timedelta(days=40 + 155))).anonymised == 1


async def test_each_run_is_audited_without_personal_data(broker: BrokerContext) -> None:
    await enrol_clinic(broker, "a")
    await _referral(broker, ["a"], T0)
    await retention.anonymise_expired(broker, now=T0 + timedelta(days=200))
    (event,) = [e for e in await audit.recent(broker.pool) if e["action"] == "retention.run"]
    assert event["details"]["anonymised"] == 1 and event["details"]["batches"] == 1
    assert "Kari" not in json.dumps(event, default=str) and "kari@" not in json.dumps(event, default=str)
    assert (await audit.verify_chain(broker.pool))[1] is None


async def test_the_sweep_costs_what_it_touches_not_the_table(broker: BrokerContext) -> None:
    # 60,000 referrals anonymised long ago and 50 due: the plan must walk the partial index only.
    await broker.pool.execute(
        """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at,
                                  anonymised_at)
           SELECT gen_random_uuid(), NULL, $1::timestamptz - make_interval(days => g % 365), 'v', 'h', $1, $1
           FROM generate_series(1, 60000) AS g""",
        T0,
    )
    await broker.pool.execute(
        """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at)
           SELECT gen_random_uuid(), 'RB-X' || g, $1, 'v', 'h', $1 FROM generate_series(1, 50) AS g""",
        T0,
    )
    await broker.pool.execute("ANALYZE referrals")
    async with broker.pool.acquire() as conn, conn.transaction():
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {DUE_BATCH_SQL}", T0 + timedelta(days=200), 1000)
    text = json.dumps(plan)
    assert "referrals_retention_due" in text
    assert '"Node Type": "Seq Scan"' not in text


async def test_retention_killed_mid_run_leaves_no_half_anonymised_referral(
    broker: BrokerContext, tmp_path: Path
) -> None:
    await enrol_clinic(broker, "a")
    for _ in range(60):
        await _referral(broker, ["a"], T0)
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": broker.settings.database_url,
        "REFERRAL_BROKER_KEYS_DIR": str(broker.settings.keys_dir),
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
    }
    args = [program("referral-broker"), "retention", "run", "--now", "2027-01-01T00:00:00+01:00", "--batch", "3"]
    proc = await asyncio.create_subprocess_exec(*args, env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while b"anonymised" not in await proc.stderr.readline():
        pass
    proc.send_signal(signal.SIGKILL)  # somewhere after the first batch, at no chosen moment
    await proc.wait()
    rows = await broker.pool.fetch(
        """SELECT (contact_ct IS NULL) AS no_contact, (email_bidx IS NULL) AS no_email, (reference IS NULL) AS no_ref,
                  (manage_token_hash IS NULL) AS no_token, (anonymised_at IS NOT NULL) AS anonymised,
                  EXISTS (SELECT 1 FROM deliveries d WHERE d.referral_id = r.id AND d.envelope IS NOT NULL) AS envelope
           FROM referrals r"""
    )
    done = [r for r in rows if r["anonymised"]]
    assert 0 < len(done) < 60
    for r in rows:  # each referral is whole or wholly anonymised, nothing in between
        assert r["no_contact"] == r["no_email"] == r["no_ref"] == r["no_token"] == r["anonymised"] != r["envelope"]
    finished = await retention.anonymise_expired(broker, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert finished.anonymised == 60 - len(done)
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals WHERE anonymised_at IS NULL") == 0


def test_retention_command_prints_what_it_did(
    clean_db: str, keys_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys_dir))
    assert main(["retention", "run", "--now", "2027-05-01T00:00:00+02:00"]) == 0
    assert "anonymised 0 referral(s)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["retention", "run", "--now", "next tuesday"])
    assert exited.value.code == 2
