"""A patient who asks to erase a referral under legal hold is told plainly why it is kept and what they can still
do (docs/decisions/0057); nothing is erased."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from referral_broker.domain.legal_hold import HoldReason
from referral_broker.services import legal_hold
from referral_broker.services.context import BrokerContext
from tests.conftest import EnrolledClinic
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the SMTP sink fixture
from tests.patient_web.test_rights_pages import (  # noqa: F401 - fixtures
    _act,
    _referral_id,
    _sign_in,
    _submit,
    client,
    no_codes_left,
)


async def test_erasing_a_held_referral_is_refused_with_a_plain_reason(
    client: AsyncTestClient[Any],  # noqa: F811
    broker: BrokerContext,
    clinics: dict[str, EnrolledClinic],
    mail_sink: MailSink,  # noqa: F811
) -> None:
    reference = await _submit(client, ["fysio-oslo"])
    referral_id = await _referral_id(broker, reference)
    await legal_hold.place(broker, reference, HoldReason.LEGAL_CLAIM, "sak 26-045117TVI", actor="operator:olga")
    listed = await _sign_in(client, mail_sink)
    # The list says it is kept, instead of the day it would be anonymised.
    assert "Holdes tilbake foreløpig" in listed.text
    # The first tap on Erase already says why, before any confirmation is asked for.
    first = await _act(client, "/rights/erase", reference)
    assert first.status_code == 409 and "Denne henvendelsen kan ikke slettes nå" in first.text
    # A confirmation posted anyway (an old tab) is refused the same way by the service.
    refused = await _act(client, "/rights/erase/confirm", reference)
    assert refused.status_code == 409
    assert "Denne henvendelsen kan ikke slettes nå" in refused.text
    assert "Ingenting er slettet" in refused.text and "trekke tilbake samtykket" in refused.text
    row = await broker.pool.fetchrow("SELECT erased_at, contact_ct FROM referrals WHERE id = $1", referral_id)
    assert row["erased_at"] is None and row["contact_ct"] is not None
