"""Security control 2: a clinic never sees, pulls or acknowledges another clinic's referral.

Randomised sequences of submissions (to A, B or both), dispatches, inbox listings and
acknowledgements — including acknowledgements of the other clinic's delivery ids — checked
against a model after every step.
"""

from __future__ import annotations

import random
import uuid

import msgspec
import pytest

from referral_broker.services import clinic_inbox, dispatch, intake
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics
from referral_protocol.enrolment import AckRequest
from referral_protocol.referral import ReferralRequest
from tests.conftest import enrol_clinic, referral_json


@pytest.mark.parametrize("seed", range(12))
async def test_clinic_cannot_list_or_acknowledge_another_clinics_referral(broker: BrokerContext, seed: int) -> None:
    rng = random.Random(seed)
    await enrol_clinic(broker, "a")
    await enrol_clinic(broker, "b")
    rows = {c.slug: c for c in await clinics.all_clinics(broker.pool)}
    waiting: dict[str, set[str]] = {"a": set(), "b": set()}  # the model: available, unacknowledged ids
    owner: dict[str, str] = {}
    undispatched: list[uuid.UUID] = []

    for _ in range(25):
        step = rng.choice(["submit", "submit", "dispatch", "list", "ack-own", "ack-other"])
        if step == "submit":
            chosen = rng.choice([["a"], ["b"], ["a", "b"]])
            receipt = await intake.submit(broker, msgspec.convert(referral_json(chosen), ReferralRequest))
            rid = await broker.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt.reference)
            undispatched.append(rid)
        elif step == "dispatch" and undispatched:
            await dispatch.dispatch_referral(broker, undispatched[rng.randrange(len(undispatched))])
            # A dispatch may take other waiting referrals along: the model follows what became available.
            for d_id, slug, rid in await broker.pool.fetch(
                "SELECT d.id::text, c.slug, d.referral_id FROM deliveries d JOIN clinics c ON c.id = d.clinic_id "
                "WHERE d.referral_id = ANY($1::uuid[]) AND d.status = 'available'",
                undispatched,
            ):
                waiting[slug].add(d_id)
                owner[d_id] = slug
                if rid in undispatched:
                    undispatched.remove(rid)
        elif step == "list":
            slug = rng.choice(["a", "b"])
            page = await clinic_inbox.list_inbox(broker, rows[slug], 500)
            assert {item.delivery_id for item in page.items} == waiting[slug]
        elif step in ("ack-own", "ack-other"):
            slug = rng.choice(["a", "b"])
            target = slug if step == "ack-own" else ("b" if slug == "a" else "a")
            ids = rng.sample(sorted(waiting[target]), k=min(len(waiting[target]), rng.randint(1, 3)))
            if not ids:
                continue
            result = await clinic_inbox.acknowledge(broker, rows[slug], AckRequest(delivery_ids=ids))
            if target == slug:
                assert result.acknowledged == ids and result.unknown == []
                waiting[slug] -= set(ids)
            else:
                assert result.acknowledged == [] and result.unknown == ids
    for slug in ("a", "b"):
        page = await clinic_inbox.list_inbox(broker, rows[slug], 500)
        assert {item.delivery_id for item in page.items} == waiting[slug]
        assert all(owner[item.delivery_id] == slug for item in page.items)
