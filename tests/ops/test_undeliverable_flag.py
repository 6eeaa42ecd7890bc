"""Referrals no key of the clinic can open are flagged on the operator's dashboard, without content."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services import clinic_keys
from referral_broker.services.context import BrokerContext
from referral_protocol.encoding import key_id
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, sign_in, submit_and_dispatch


async def test_referrals_sealed_only_to_a_revoked_key_are_flagged_on_the_dashboard(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    clinic = await enrol_clinic(broker, "fysio-oslo")
    await submit_and_dispatch(client, broker, ["fysio-oslo"], description="CANARY-7 vondt i foten")
    await sign_in(client, operator, clock)
    assert "Undeliverable referrals" in (page := (await client.get("/ops")).text) and "None." in page
    revoked = await clinic_keys.revoke_key(
        broker, "fysio-oslo", key_id(clinic.secrets.encryption_public(0)), actor="test"
    )
    assert len(revoked.undeliverable) == 1 and revoked.active_encryption_keys == 0
    page = (await client.get("/ops")).text
    assert "Klinikk fysio-oslo: 1 referral(s) undeliverable" in page
    assert "sealed only to revoked keys" in page
    assert "CANARY-7" not in page and "Kari" not in page
