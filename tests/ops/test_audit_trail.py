"""The audit trail (security.md control 15): filtered on the page, and its hash chain checked on the page
and by `referral-broker audit verify`, which names the first broken link after a row is altered or
removed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.cli.broker import main
from referral_broker.services.context import BrokerContext
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, post_form, sign_in, submit_and_dispatch


def _event_ids(page: str) -> list[str]:
    import re

    return re.findall(r'<td class="num">(\d+)</td>\s*<td class="nowrap">', page)


async def test_audit_page_filters_by_clinic_action_and_time(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    await submit_and_dispatch(client, broker, ["klinikk-a"])
    await submit_and_dispatch(client, broker, ["klinikk-b"])
    await sign_in(client, operator, clock)
    await post_form(client, "/ops/clinics/klinikk-b/suspend", confirm="yes")

    everything = (await client.get("/ops/audit")).text
    assert "clinic.enrolled" in everything and "operator.login" in everything and "clinic.suspended" in everything

    only_b = (await client.get("/ops/audit", params={"clinic": "klinikk-b"})).text
    assert "clinic.suspended" in only_b and "delivery.dispatched" in only_b  # a referral with a delivery to b
    ids_b = _event_ids(only_b)
    all_ids = _event_ids(everything)
    assert 0 < len(ids_b) < len(all_ids)
    a_events = await broker.pool.fetch("SELECT id FROM audit_events WHERE subject = 'klinikk-a'")
    assert not {str(r["id"]) for r in a_events} & set(ids_b)

    operator_events = (await client.get("/ops/audit", params={"action": "operator."})).text
    assert "<code>operator.login</code>" in operator_events and "<code>clinic.enrolled</code>" not in operator_events

    future = (clock() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert "No events match." in (await client.get("/ops/audit", params={"since": future})).text
    assert _event_ids((await client.get("/ops/audit", params={"until": future})).text) == all_ids
    bad = await client.get("/ops/audit", params={"since": "yesterday"})
    assert bad.status_code == 400 and "A time must look like" in bad.text


async def test_integrity_check_on_the_page_finds_an_altered_row(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await sign_in(client, operator, clock)
    assert "The chain is intact" in (await client.get("/ops/audit/verify")).text
    target = await broker.pool.fetchval("SELECT min(id) FROM audit_events WHERE action = 'clinic.verified'")
    await broker.pool.execute("UPDATE audit_events SET actor = 'someone else' WHERE id = $1", target)
    page = (await client.get("/ops/audit/verify")).text
    assert f"The chain is broken at event #{target}" in page and "altered" in page


def test_audit_verify_cli_names_the_first_broken_link(
    clean_db: str, keys_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", clean_db)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("REFERRAL_BROKER_OPERATOR_PASSWORD", "a long enough password")
    for name in ("ann", "bob", "cas", "dag"):
        assert main(["operator", "create", "--username", name, "--role", "auditor"]) == 0
    capsys.readouterr()
    assert main(["audit", "verify"]) == 0
    assert "intact: 4 events checked" in capsys.readouterr().out

    ids = _run(_fetch_ids(clean_db))
    _run(_execute(clean_db, 'UPDATE audit_events SET details = \'{"role": "operator"}\' WHERE id = $1', ids[2]))
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN at event #{ids[2]}" in err and "altered" in err and "2 events before it" in err

    _run(_execute(clean_db, "DELETE FROM audit_events WHERE id = ANY($1::bigint[])", ids[1:3]))
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert f"BROKEN at event #{ids[3]}" in err and "removed" in err


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


async def _fetch_ids(url: str) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM audit_events ORDER BY id")]
    finally:
        await conn.close()


async def _execute(url: str, sql: str, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()
