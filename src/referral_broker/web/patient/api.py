"""The patient's JSON API: the consent text, the clinics to choose from, and submitting a referral."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import TooManyRequestsException

from referral_broker.domain.referral import Receipt, ReferralRequest
from referral_broker.domain.validation import decode_json
from referral_broker.services import catalogue, intake
from referral_broker.services.catalogue import ClinicChoice, ConsentText
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.patient.submission_guard import admit_submission, provide_submit_counter
from referral_broker.web.state import provide_broker


class PatientApi(Controller):
    path = "/api/v1"
    tags = ["patient"]  # noqa: RUF012 - Litestar reads class attributes
    dependencies = {  # noqa: RUF012
        "broker": Provide(provide_broker, sync_to_thread=False),
        "submit_counter": Provide(provide_submit_counter, sync_to_thread=False),
    }

    @get("/consent")
    async def consent(self) -> ConsentText:
        return catalogue.current_consent()

    @get("/clinics")
    async def clinics(self, broker: NamedDependency[BrokerContext]) -> list[ClinicChoice]:
        return await catalogue.choosable_clinics(broker)

    @post("/referrals", status_code=201)
    async def submit(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Response[Receipt]:
        """Submit a referral. Unknown fields are refused; every wrong field is named in `errors`.

        Send an `Idempotency-Key` header (16–200 of `A-Za-z0-9._:-`) to make retries safe: a repeat
        answers 200 with the first receipt, the same private link included.
        Shares its per-client limit (`REFERRAL_BROKER_SUBMIT_RATE` a minute) with the web form: 429 past it."""
        wait = await admit_submission(request, broker, submit_counter)
        if wait:
            raise TooManyRequestsException(
                detail="too many submissions from this address; try again in a minute",
                headers={"retry-after": str(wait)},
            )
        referral = decode_json(await request.body(), ReferralRequest)
        receipt, repeated = await intake.submit_once(
            broker, referral, idempotency_key=request.headers.get("idempotency-key")
        )
        # A repeat under the same Idempotency-Key gets the first receipt again, and creates nothing.
        return Response(receipt, status_code=200 if repeated else 201)
