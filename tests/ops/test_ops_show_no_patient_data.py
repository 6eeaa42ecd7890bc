"""security.md control 18: after a full run with canary strings, no operator page, /metrics, the audit
trail or a clinic notice holds any of them — nor a referral's reference or manage token."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from referral_broker.adapters.configured import ConfiguredNoticeSender
from referral_broker.services import clinic_inbox, dispatch, notifications
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics
from referral_protocol.enrolment import AckRequest
from tests.conftest import enrol_clinic, referral_json
from tests.ops.conftest import Account, Clock, OpsApp, post_form, sign_in
from tests.ops.notice_sinks import MailSink, WebhookReceiver
from tests.ops.test_ops_authorisation import ops_routes

CANARIES = {
    "name": "Zyxcanary Nordmann",
    "email": "zyx.canary.mail@example.no",
    "phone": "+4741239871",
    "description": "CANARY-NEED-7F3A knee pain after running",
}


async def test_no_operator_page_metric_or_notice_holds_patient_data(
    client: AsyncTestClient[Any],
    ops_app: OpsApp,
    broker: BrokerContext,
    operator: Account,
    clock: Clock,
    mail_sink: MailSink,
    webhook: WebhookReceiver,
) -> None:
    ctx = dataclasses.replace(broker, settings=msgspec.structs.replace(broker.settings, smtp_url=mail_sink.url))
    await enrol_clinic(ctx, "klinikk-a")
    await enrol_clinic(ctx, "klinikk-b")
    await enrol_clinic(ctx, "klinikk-c", verify=False)
    await notifications.set_contact(ctx, "klinikk-a", email="post@klinikk-a.no", webhook_url=webhook.url, actor="t")

    secrets: list[str] = list(CANARIES.values())
    referral_ids = []
    for clinics_, patient in ((["klinikk-a", "klinikk-b"], CANARIES), (["klinikk-b"], CANARIES)):
        body = referral_json(
            clinics_, description=patient["description"], **{k: v for k, v in patient.items() if k != "description"}
        )
        response = await client.post("/api/v1/referrals", json=body)
        assert response.status_code == 201
        receipt = response.json()
        secrets += [receipt["reference"], receipt["manage_url"].rsplit("/", 1)[-1]]
        referral_ids.append(
            await ctx.pool.fetchval("SELECT id FROM referrals WHERE reference = $1", receipt["reference"])
        )
    # The second has been tried in vain many times (so the first's dispatch does not take it along).
    await ctx.pool.execute("UPDATE outbox SET attempts = 99 WHERE subject_id = $1", referral_ids[1])
    assert await dispatch.dispatch_referral(ctx, referral_ids[0]) == dispatch.DispatchOutcome.DISPATCHED
    assert await dispatch.dispatch_referral(ctx, referral_ids[1]) == dispatch.DispatchOutcome.DEAD
    for notice in await ctx.pool.fetch("SELECT id FROM clinic_notifications"):
        await notifications.send_notice(ctx, notice["id"], ConfiguredNoticeSender(ctx.settings, ctx.keys.signer))
    a = await clinics.by_slug(ctx.pool, "klinikk-a")
    assert a is not None
    inbox = await clinic_inbox.list_inbox(ctx, a, 10)
    await clinic_inbox.acknowledge(ctx, a, AckRequest(delivery_ids=[i.delivery_id for i in inbox.items]))
    assert mail_sink.messages and webhook.received

    await sign_in(client, operator, clock)
    dead = await ctx.pool.fetchval("SELECT id FROM deliveries WHERE status = 'dead' LIMIT 1")
    pages: dict[str, str] = {}
    for method, path in ops_routes(ops_app.app):
        if method == "GET":
            pages[path] = (await client.get(path)).text
    for query in ("clinic=klinikk-a", "clinic=klinikk-b", "action=delivery.", "action=clinic."):
        pages[f"/ops/audit?{query}"] = (await client.get(f"/ops/audit?{query}")).text
    pages["/metrics"] = (await client.get("/metrics")).text
    pages["retry (POST)"] = (await post_form(client, f"/ops/deliveries/{dead}/retry")).text
    pages["/ops after the retry"] = (await client.get("/ops?done=retried")).text
    pages["e-mails"] = "\n".join(m.as_string() for m in mail_sink.messages)
    pages["webhooks"] = "\n".join(r.body.decode() + str(r.headers) for r in webhook.received)

    assert "klinikk-b" in pages["/ops"] and "delivery.dispatched" in pages["/ops/audit"]  # the pages are real
    assert "referral_broker_submissions_total 2.0" in pages["/metrics"]
    for where, text in pages.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} found in {where}"
            assert secret.lower() not in text.lower(), f"{secret!r} found in {where}"
        assert "Kari" not in text and "1990-05-17" not in text, where
