"""The dashboard names each clinic's organisation number and HER-id, and says when a clinic enrolled
before they were asked for has none."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, sign_in


async def test_the_dashboard_shows_each_clinics_organisation_number_and_her_id(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    await broker.pool.execute("UPDATE clinics SET her_id = '8765432' WHERE slug = 'klinikk-a'")
    await broker.pool.execute("UPDATE clinics SET organisation_number = NULL WHERE slug = 'klinikk-b'")
    await sign_in(client, operator, clock)
    page = (await client.get("/ops?lang=en")).text
    row_a = page[page.index('<span class="slug">klinikk-a</span>') : page.index("</th>", page.index("klinikk-a"))]
    row_b = page[page.index('<span class="slug">klinikk-b</span>') : page.index("</th>", page.index("klinikk-b"))]
    assert "org. no. 987654325 · HER-id 8765432" in row_a
    assert "no organisation number" in row_b
