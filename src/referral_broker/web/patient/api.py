"""The patient's JSON API: the consent text, the clinics to choose from, and submitting a referral."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, TooManyRequestsException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation, Parameter, Schema
from litestar.openapi.spec.enums import OpenAPIType

from referral_broker.services import catalogue, intake
from referral_broker.services.catalogue import ClinicChoice, ConsentText
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.api_document import ErrorBody, InvalidRequestBody, inline_json_schema, json_request_body
from referral_broker.web.patient.submission_guard import admit_submission
from referral_protocol.errors import InvalidRequest
from referral_protocol.referral import Receipt, ReferralRequest
from referral_protocol.validation import decode_json

REFERRAL_REQUEST_SCHEMA = inline_json_schema(ReferralRequest)


def json_body_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """415 unless the body is declared `application/json`.

    A page on another site can make a visitor's browser post `text/plain`, a form or multipart without
    asking (a "simple" request); `application/json` needs a CORS preflight this service never grants. So
    only a JSON body can be a referral, and no other site can submit one from a visitor's browser.
    """
    media_type = connection.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(status_code=415, detail="send the referral as application/json")


@dataclass
class SubmitOperation(Operation):
    """The handler reads the raw body (to name every wrong field), so Litestar cannot see its type:
    the request body and the `Idempotency-Key` header are documented here instead."""

    def __post_init__(self) -> None:
        self.request_body = json_request_body(REFERRAL_REQUEST_SCHEMA, "The referral. Unknown fields are refused.")
        self.parameters = [
            *(self.parameters or []),
            Parameter(
                name="Idempotency-Key",
                param_in="header",
                required=False,
                description="Makes retries safe: a repeat with the same key and request answers 200 with the "
                "first receipt.",
                schema=Schema(type=OpenAPIType.STRING, pattern=intake.IDEMPOTENCY_KEY.pattern),
            ),
        ]


class PatientApi(Controller):
    path = "/api/v1"
    tags = ["patient"]  # noqa: RUF012 - Litestar reads class attributes

    @get("/consent")
    async def consent(self) -> ConsentText:
        return catalogue.current_consent()

    @get("/clinics")
    async def clinics(self, broker: NamedDependency[BrokerContext]) -> list[ClinicChoice]:
        return await catalogue.choosable_clinics(broker)

    @post(
        "/referrals",
        status_code=201,
        operation_class=SubmitOperation,
        guards=[json_body_only],
        responses={
            200: ResponseSpec(Receipt, description="A repeat under the same Idempotency-Key: the first receipt"),
            400: ResponseSpec(
                InvalidRequestBody,
                description="The request could not be read: not JSON, not UTF-8, or a zero byte or control "
                "character in the address or a header (the field is `body`, `path`, `query …` or `header …`)",
            ),
            413: ResponseSpec(ErrorBody, description="The body is larger than REFERRAL_BROKER_MAX_BODY_BYTES"),
            415: ResponseSpec(ErrorBody, description="The body is not declared as application/json"),
            422: ResponseSpec(InvalidRequestBody, description="Every wrong field, each with a code and a message"),
            429: ResponseSpec(ErrorBody, description="Too many submissions from this address; see Retry-After"),
        },
    )
    async def submit(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Response[Receipt]:
        """Submit a referral as `application/json` (anything else: 415). Unknown fields are refused; every
        wrong field is named in `errors` (422); a body that is not JSON is 400.

        Send an `Idempotency-Key` header (16–200 of `A-Za-z0-9._:-`) to make retries safe: a repeat
        answers 200 with the first receipt, the same private link included.
        Shares its per-client limits with the web form: `REFERRAL_BROKER_SUBMIT_RATE` accepted and
        `REFERRAL_BROKER_SUBMIT_REFUSED_RATE` refused submissions a minute, each counted apart: 429 past either."""
        admission = await admit_submission(request, broker, submit_counter)
        if not admission.admitted and (earlier := await self._repeat(request, broker)) is not None:
            return Response(earlier, status_code=200)
        if not admission.admitted:
            what = "accepted" if admission.limit == "accepted" else "refused"
            raise TooManyRequestsException(
                detail=f"too many {what} submissions from this address; try again in a minute",
                headers={"retry-after": str(admission.retry_after_seconds)},
            )
        try:
            referral = decode_json(await request.body(), ReferralRequest)
            receipt, repeated = await intake.submit_once(
                broker, referral, idempotency_key=request.headers.get("idempotency-key")
            )
        except InvalidRequest:  # malformed too: a refused submission
            await admission.settle("refused")
            raise
        await admission.settle("neither" if repeated else "accepted")
        # A repeat under the same Idempotency-Key gets the first receipt again, and creates nothing.
        return Response(receipt, status_code=200 if repeated else 201)

    @staticmethod
    async def _repeat(request: Request[Any, Any, Any], broker: BrokerContext) -> Receipt | None:
        """The first receipt when this is a repeat under an earlier Idempotency-Key (answered past the limit)."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        try:
            referral = decode_json(await request.body(), ReferralRequest)
        except InvalidRequest:
            return None
        return await intake.earlier_receipt(broker, referral, idempotency_key=key)
