"""During a change of the broker's signing key, /ops shows the phase and which clinics have pinned the new key
(decision 0071); before and after, it shows nothing about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.crypto.broker_keys import init_keys
from referral_broker.services import signing_rotation
from referral_broker.services.context import BrokerContext
from referral_broker.store import broker_key_changes
from tests.conftest import enrol_clinic
from tests.ops.conftest import Account, Clock, sign_in


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    init_keys(folder)
    return folder


async def test_the_dashboard_shows_who_has_pinned_the_new_signing_key(
    client: AsyncTestClient[Any], broker: BrokerContext, operator: Account, clock: Clock
) -> None:
    await enrol_clinic(broker, "klinikk-a")
    await enrol_clinic(broker, "klinikk-b")
    await sign_in(client, operator, clock)
    assert "signing-title" not in (await client.get("/ops?lang=en")).text

    announced = await signing_rotation.rotate(broker)
    a = await broker.pool.fetchval("SELECT id FROM clinics WHERE slug = 'klinikk-a'")
    statement = await broker.pool.fetchval("SELECT id FROM broker_key_statements WHERE clinic_id = $1", a)
    await broker_key_changes.acknowledge(broker.pool, a, [statement], clock())
    page = (await client.get("/ops?lang=en")).text
    section = page[page.index('id="signing-title"') : page.index("</section>", page.index('id="signing-title"'))]
    assert f"Key {announced.new_key_id} is announced to the clinics but does not sign yet" in section
    row_a = section[section.index("klinikk-a") : section.index("</tr>", section.index("klinikk-a"))]
    row_b = section[section.index("klinikk-b") : section.index("</tr>", section.index("klinikk-b"))]
    assert "not yet" not in row_a and "not yet" in row_b
    assert "ikke ennå" in (await client.get("/ops?lang=nb")).text

    await signing_rotation.activate(broker)
    assert "clinics still accept the previous key" in (await client.get("/ops?lang=en")).text
