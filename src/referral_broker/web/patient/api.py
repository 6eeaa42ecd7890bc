"""The patient's JSON API: the consent text, the clinics to choose from, and submitting a referral."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide

from referral_broker.domain.referral import Receipt, ReferralRequest
from referral_broker.domain.validation import decode_json
from referral_broker.services import catalogue, intake
from referral_broker.services.catalogue import ClinicChoice, ConsentText
from referral_broker.services.context import BrokerContext
from referral_broker.web.state import provide_broker


class PatientApi(Controller):
    path = "/api/v1"
    tags = ["patient"]  # noqa: RUF012 - Litestar reads class attributes
    dependencies = {"broker": Provide(provide_broker, sync_to_thread=False)}  # noqa: RUF012

    @get("/consent")
    async def consent(self) -> ConsentText:
        return catalogue.current_consent()

    @get("/clinics")
    async def clinics(self, broker: NamedDependency[BrokerContext]) -> list[ClinicChoice]:
        return await catalogue.choosable_clinics(broker)

    @post("/referrals", status_code=201)
    async def submit(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Receipt:
        """Submit a referral. Unknown fields are refused; every wrong field is named in `errors`."""
        referral = decode_json(await request.body(), ReferralRequest)
        return await intake.submit(broker, referral)
