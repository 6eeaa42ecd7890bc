"""Legal holds on /ops (issue 22): an operator places and releases a hold; a note with contact details is refused
and what was typed is kept; an auditor sees the holds but no form; nothing the patient typed is shown."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from referral_broker.store import audit
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, post_form, sign_in, submit_and_dispatch

NOTE = "Tingrettssak 26-045117TVI-OTIR/02"


async def test_an_operator_places_and_releases_a_hold_from_ops(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    reference = await submit_and_dispatch(client, broker, ["klinikk-a"], name="Kari Canary Nordmann")
    await sign_in(client, operator, clock)

    placed = await post_form(client, "/ops/holds", reference=reference, reason="authority_order", note=NOTE)
    assert placed.status_code == 303 and placed.headers["location"] == "/ops/holds?done=held"
    page = (await client.get("/ops/holds?done=held")).text
    assert "The referral is under legal hold" in page
    assert reference in page and NOTE in page and "Order from an authority" in page and "operator:olga" in page
    assert "Canary" not in page  # the patient's details never reach an operator page
    held = await broker.pool.fetchrow("SELECT hold_reason, held_by FROM referrals WHERE reference = $1", reference)
    assert (held["hold_reason"], held["held_by"]) == ("authority_order", "operator:olga")

    released = await post_form(client, "/ops/holds/release", reference=reference)
    assert released.status_code == 303 and released.headers["location"] == "/ops/holds?done=released"
    page = (await client.get("/ops/holds?done=released")).text
    assert "anonymised on the usual schedule" in page and "No referral is under legal hold." in page
    actions = [e["action"] for e in reversed(await audit.recent(broker.pool))]
    assert actions[-2:] == ["referral.held", "referral.released"]


async def test_a_note_with_an_address_is_refused_with_what_was_typed_kept(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    reference = await submit_and_dispatch(client, broker, ["klinikk-a"])
    await sign_in(client, operator, clock)
    refused = await post_form(client, "/ops/holds", reference=reference, reason="legal_claim", note="ola@example.no")
    assert refused.status_code == 409 and "e-mail address" in refused.text
    assert f'value="{reference}"' in refused.text and '<option value="legal_claim" selected>' in refused.text
    assert await broker.pool.fetchval("SELECT held_at FROM referrals WHERE reference = $1", reference) is None
    unknown = await post_form(client, "/ops/holds", reference="RB-00000-00000", reason="legal_claim", note=NOTE)
    assert unknown.status_code == 409 and "no referral has the reference RB-00000-00000" in unknown.text
    odd = await post_form(client, "/ops/holds", reference=reference, reason="curiosity", note=NOTE)
    assert odd.status_code == 409 and "the reason must be one of" in odd.text


async def test_an_auditor_sees_the_holds_without_the_forms(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, auditor: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    reference = await submit_and_dispatch(client, broker, ["klinikk-a"])
    await sign_in(client, operator, clock)
    assert (await post_form(client, "/ops/holds", reference=reference, reason="legal_claim", note=NOTE)).status_code
    await sign_in(client, auditor, clock)
    page = (await client.get("/ops/holds")).text
    assert reference in page and 'action="/ops/holds' not in page
    refused = await post_form(client, "/ops/holds/release", reference=reference)
    assert refused.status_code == 403
    assert await broker.pool.fetchval("SELECT held_at FROM referrals WHERE reference = $1", reference) is not None
