"""Legal hold (issue 22, docs/decisions/0057): a held referral outlives the five months, the sweep says how many
it skipped, releasing returns it to the rule (anonymised at once if overdue), erasure is refused while held."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from referral_broker.cli.broker import main
from referral_broker.domain.legal_hold import HoldReason, HoldRefused, checked_note
from referral_broker.services import dispatch, intake, legal_hold, retention, rights
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, clinics
from referral_protocol.referral import ReferralRequest
from tests.conftest import enrol_clinic, referral_json
from tests.test_rights import Outbox

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
FIVE_MONTHS = datetime(2026, 8, 10, 12, 0, tzinfo=UTC)  # T0 plus five calendar months
NOTE = "Tingrettssak 26-045117TVI-OTIR/02"


async def _referral(broker: BrokerContext, at: datetime = T0, **patient: str) -> tuple[uuid.UUID, str]:
    if await clinics.by_slug(broker.pool, "a") is None:
        await enrol_clinic(broker, "a")
    broker.clock = lambda: at
    receipt = await intake.submit(broker, msgspec.convert(referral_json(["a"], **patient), ReferralRequest))
    rid: uuid.UUID = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
    await dispatch.dispatch_referral(broker, rid)
    return rid, receipt.reference


async def _anonymised(broker: BrokerContext, rid: uuid.UUID) -> bool:
    row = await broker.pool.fetchrow("SELECT anonymised_at, contact_ct, reference FROM referrals WHERE id = $1", rid)
    gone = row["anonymised_at"] is not None
    assert gone == (row["contact_ct"] is None) == (row["reference"] is None)  # whole, or wholly anonymised
    return gone


async def _at(broker: BrokerContext, moment: datetime) -> None:
    broker.clock = lambda: moment


async def test_a_held_referral_outlives_its_five_months_and_the_sweep_counts_it(broker: BrokerContext) -> None:
    held, reference = await _referral(broker)
    free, _ = await _referral(broker)
    await _at(broker, T0 + timedelta(days=30))
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")

    run = await retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=1))
    assert (run.anonymised, run.held) == (1, 1)
    assert not await _anonymised(broker, held) and await _anonymised(broker, free)
    (event,) = [e for e in await audit.recent(broker.pool) if e["action"] == "retention.run"]
    assert event["details"]["held"] == 1

    # A year on it is still kept, and still counted, run after run.
    again = await retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=365))
    assert (again.anonymised, again.held) == (0, 1)
    assert not await _anonymised(broker, held)


async def test_a_held_referral_not_yet_due_is_not_counted_as_skipped(broker: BrokerContext) -> None:
    _, reference = await _referral(broker)
    await legal_hold.place(broker, reference, HoldReason.AUTHORITY_ORDER, NOTE, actor="operator:olga")
    run = await retention.anonymise_expired(broker, now=FIVE_MONTHS - timedelta(days=1))
    assert (run.anonymised, run.held) == (0, 0)


async def test_releasing_an_overdue_hold_anonymises_the_referral_at_once(broker: BrokerContext) -> None:
    rid, reference = await _referral(broker, email="kari@example.no")
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    await _at(broker, FIVE_MONTHS + timedelta(days=60))
    done = await legal_hold.release(broker, reference, actor="operator:olga")
    assert done.anonymised
    assert await _anonymised(broker, rid)
    # Anonymised as the sweep does it: the need's category survives, the envelope does not.
    row = await broker.pool.fetchrow("SELECT category, held_at FROM referrals WHERE id = $1", rid)
    assert row["category"] == "physiotherapy" and row["held_at"] is None
    assert await broker.pool.fetchval("SELECT count(*) FROM deliveries WHERE envelope IS NOT NULL") == 0


async def test_releasing_a_hold_early_returns_the_referral_to_the_five_month_rule(broker: BrokerContext) -> None:
    rid, reference = await _referral(broker)
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    await _at(broker, T0 + timedelta(days=20))
    assert not (await legal_hold.release(broker, reference, actor="operator:olga")).anonymised
    assert not await _anonymised(broker, rid)
    assert (await retention.anonymise_expired(broker, now=FIVE_MONTHS - timedelta(days=1))).anonymised == 0
    run = await retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=1))
    assert (run.anonymised, run.held) == (1, 0)
    assert await _anonymised(broker, rid)


async def test_placing_and_releasing_are_audited_with_the_reason_but_not_the_note(broker: BrokerContext) -> None:
    rid, reference = await _referral(broker)
    await legal_hold.place(broker, reference.lower(), HoldReason.AUTHORITY_ORDER, NOTE, actor="operator:olga")
    await legal_hold.release(broker, reference, actor="operator:per")
    events = [e for e in reversed(await audit.recent(broker.pool)) if e["action"].startswith("referral.")]
    assert [(e["action"], e["actor"], e["subject"]) for e in events] == [
        ("referral.held", "operator:olga", str(rid)),
        ("referral.released", "operator:per", str(rid)),
    ]
    assert events[0]["details"] == {"reason": "authority_order"}
    assert "045117" not in json.dumps([dict(e) for e in await audit.recent(broker.pool)], default=str)
    assert (await audit.verify_chain(broker.pool))[1] is None


@pytest.mark.parametrize(
    "note",
    [
        "Klage fra kari.nordmann@example.no",
        "ring 912 34 567",
        "+47 91234567",
        "fnr 01017012345",
        "   ",
        "x" * 201,
    ],
)
def test_a_note_with_contact_details_or_too_long_is_refused(note: str) -> None:
    with pytest.raises(HoldRefused):
        checked_note(note)


def test_a_case_number_is_a_fine_note() -> None:
    assert checked_note(f"  {NOTE}\n") == NOTE
    assert checked_note("Politiets pålegg 2026/4411, sak 12") == "Politiets pålegg 2026/4411, sak 12"


async def test_a_refused_note_changes_nothing_and_leaves_no_audit_event(broker: BrokerContext) -> None:
    rid, reference = await _referral(broker)
    with pytest.raises(HoldRefused, match="e-mail"):
        await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, "from ola@example.no", actor="operator:olga")
    assert await broker.pool.fetchval("SELECT held_at FROM referrals WHERE id = $1", rid) is None
    assert not [e for e in await audit.recent(broker.pool) if e["action"] == "referral.held"]


async def test_holds_on_unknown_anonymised_or_held_referrals_and_releases_of_free_ones_are_refused(
    broker: BrokerContext,
) -> None:
    _, reference = await _referral(broker)
    old, old_reference = await _referral(broker)
    with pytest.raises(HoldRefused, match="no referral"):
        await legal_hold.place(broker, "RB-00000-00000", HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    with pytest.raises(HoldRefused, match="not under legal hold"):
        await legal_hold.release(broker, reference, actor="operator:olga")
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    with pytest.raises(HoldRefused, match="already"):
        await legal_hold.place(broker, reference, HoldReason.AUTHORITY_ORDER, NOTE, actor="operator:olga")
    await retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=1))
    assert await _anonymised(broker, old)
    with pytest.raises(HoldRefused, match="no referral"):  # nothing personal is left to keep
        await legal_hold.place(broker, old_reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    assert [h.reference for h in await legal_hold.current(broker)] == [reference]


async def test_erasure_of_a_held_referral_is_refused_and_withdrawal_still_works(broker: BrokerContext) -> None:
    rid, reference = await _referral(broker, email="kari@example.no")
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
    outbox = Outbox()
    code_id = await rights.request_code(broker, outbox, "email", "kari@example.no")
    _, session = await rights.verify_code(broker, str(code_id), outbox.last_code)

    with pytest.raises(rights.HeldForLegalClaim):
        await rights.erase(broker, session, reference)
    row = await broker.pool.fetchrow("SELECT erased_at, anonymised_at, contact_ct FROM referrals WHERE id = $1", rid)
    assert row["erased_at"] is None and row["anonymised_at"] is None and row["contact_ct"] is not None
    refused = [e for e in await audit.recent(broker.pool) if e["action"] == "rights.erasure_refused"]
    assert [e["subject"] for e in refused] == [str(rid)]

    await rights.withdraw(broker, session, reference)  # consent can always be withdrawn
    assert await broker.pool.fetchval("SELECT withdrawn_at FROM referrals WHERE id = $1", rid) is not None

    await legal_hold.release(broker, reference, actor="operator:olga")
    await rights.erase(broker, session, reference)  # once released, erasure goes through
    assert await _anonymised(broker, rid)


async def test_the_sweep_and_the_skipped_count_stay_on_their_partial_indexes(broker: BrokerContext) -> None:
    # 60,000 rows anonymised long ago, 50 held and due: neither query may read the table.
    await broker.pool.execute(
        """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at,
                                  anonymised_at)
           SELECT gen_random_uuid(), NULL, $1::timestamptz - make_interval(days => g % 365), 'v', 'h', $1, $1
           FROM generate_series(1, 60000) AS g""",
        T0,
    )
    await broker.pool.execute(
        """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at,
                                  held_at, hold_reason, hold_note, held_by)
           SELECT gen_random_uuid(), 'RB-H' || g, $1, 'v', 'h', $1, $1, 'legal_claim', 'sak', 'operator:olga'
           FROM generate_series(1, 50) AS g""",
        T0,
    )
    await broker.pool.execute("ANALYZE referrals")
    from referral_broker.store.retention import DUE_BATCH_SQL

    due = T0 + timedelta(days=200)
    async with broker.pool.acquire() as conn, conn.transaction():
        sweep = json.dumps(await conn.fetchval(f"EXPLAIN (FORMAT JSON) {DUE_BATCH_SQL}", due, 1000))
        held = json.dumps(
            await conn.fetchval(
                """EXPLAIN (FORMAT JSON) SELECT count(*) FROM referrals WHERE anonymised_at IS NULL
                   AND held_at IS NOT NULL AND coalesce(retention_anchor, created_at) <= $1""",
                due,
            )
        )
    assert "referrals_retention_due" in sweep and '"Seq Scan"' not in sweep
    assert "referrals_held" in held and '"Seq Scan"' not in held
    assert (await retention.anonymise_expired(broker, now=due)).held == 50


def test_the_cli_holds_lists_and_releases_a_referral(
    clean_db: str, keys_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys_dir))
    reference = _cli_referral(clean_db, keys_dir)

    assert main(["referral", "hold", reference, "--reason", "legal_claim", "--note", NOTE]) == 0
    assert f"{reference} is under legal hold (legal_claim)" in capsys.readouterr().out
    assert main(["referral", "holds"]) == 0
    listed = capsys.readouterr().out
    assert reference in listed and NOTE in listed and "operator-cli" in listed
    assert main(["referral", "hold", reference, "--reason", "legal_claim", "--note", "call 41234567"]) == 2
    assert "long number" in capsys.readouterr().err
    assert main(["retention", "run", "--now", "2030-01-01T00:00:00+01:00"]) == 0
    assert "1 due referral(s) skipped: under legal hold" in capsys.readouterr().out
    assert main(["referral", "release", reference]) == 0  # sent today: not yet due (the service tests cover overdue)
    assert "anonymised on the usual schedule" in capsys.readouterr().out
    assert main(["referral", "release", reference]) == 2
    assert main(["referral", "holds"]) == 0
    assert "no referral is under legal hold" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["referral", "hold", reference, "--reason", "curiosity", "--note", NOTE])


def _cli_referral(database_url: str, keys_dir: Path) -> str:
    """A referral in the database the CLI is pointed at, submitted through the service."""
    import asyncio

    from referral_broker.cli.command_context import open_command_context
    from referral_broker.services.settings import Settings

    async def submit() -> str:
        ctx = await open_command_context(Settings(database_url=database_url, keys_dir=keys_dir))
        try:
            await enrol_clinic(ctx, "a")
            receipt = await intake.submit(ctx, msgspec.convert(referral_json(["a"]), ReferralRequest))
            return receipt.reference
        finally:
            await ctx.close()

    return asyncio.run(submit())


async def test_holds_placed_while_the_sweep_runs_either_keep_the_referral_or_find_it_gone(
    broker: BrokerContext,
) -> None:
    await enrol_clinic(broker, "a")
    broker.clock = lambda: T0
    references = []
    for _ in range(120):
        receipt = await intake.submit(broker, msgspec.convert(referral_json(["a"]), ReferralRequest))
        references.append(receipt.reference)
    await _at(broker, FIVE_MONTHS + timedelta(days=1))
    wanted = references[::3]

    async def hold(reference: str) -> bool:
        try:
            await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, NOTE, actor="operator:olga")
        except HoldRefused:
            return False
        return True

    sweep, *placed = await asyncio.gather(
        retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=1), batch_size=5),
        *(hold(r) for r in wanted),
    )
    rows = {
        r["reference"]: r
        for r in await broker.pool.fetch(
            "SELECT reference, held_at, anonymised_at FROM referrals WHERE reference = ANY($1::text[])", wanted
        )
    }
    for reference, ok in zip(wanted, placed, strict=True):
        if ok:  # held: kept whole
            assert rows[reference]["held_at"] is not None and rows[reference]["anonymised_at"] is None
        else:  # the sweep came first: nothing is left under that reference
            assert reference not in rows
    assert any(placed)  # (the sweep of 120 in batches of 5 is slower than 40 holds: some come first)
    left = await retention.anonymise_expired(broker, now=FIVE_MONTHS + timedelta(days=1))
    assert left.anonymised == 0 and left.held == sum(placed)
    assert sweep.anonymised + sum(placed) == 120
