"""Sending the same form twice (a refreshed receipt, a double click) creates one referral and shows its receipt."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from tests.conftest import EnrolledClinic
from tests.patient_web.conftest import csrf_of, good_form, manage_token_of


async def _open_form(client: AsyncTestClient[Any], lang: str) -> tuple[str, str]:
    page = (await client.get(f"/send?clinic=fysio-oslo&lang={lang}")).text
    submission = re.search(r'name="submission" value="([^"]+)"', page)
    assert submission
    return csrf_of(page), submission.group(1)


async def test_a_refreshed_receipt_sends_nothing_twice_and_shows_the_same_private_link(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    csrf, submission = await _open_form(client, "en")
    data = {**good_form(["fysio-oslo"]), "_csrf_token": csrf, "submission": submission}
    first = await client.post("/send", data=data)
    again = await client.post("/send", data=data)
    assert first.status_code == again.status_code == 200
    assert "already been sent" not in first.text and "already been sent" in again.text
    assert manage_token_of(again.text) == manage_token_of(first.text)
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 1


async def test_a_form_kept_through_corrections_still_sends_once(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    csrf, submission = await _open_form(client, "nb")
    wrong = await client.post(
        "/send", data={**good_form(["fysio-oslo"], email="nope"), "_csrf_token": csrf, "submission": submission}
    )
    assert wrong.status_code == 422 and f'value="{submission}"' in wrong.text  # the key survives the correction
    fixed = {**good_form(["fysio-oslo"]), "_csrf_token": csrf, "submission": submission}
    assert (await client.post("/send", data=fixed)).status_code == 200
    assert "allerede sendt" in (await client.post("/send", data=fixed)).text
    assert await broker.pool.fetchval("SELECT count(*) FROM referrals") == 1
