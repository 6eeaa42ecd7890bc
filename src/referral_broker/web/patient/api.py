"""The patient's JSON API: the consent text, the clinics to choose from, and submitting a referral."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import TooManyRequestsException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from referral_broker.domain.referral import Receipt, ReferralRequest
from referral_broker.domain.validation import decode_json
from referral_broker.services import catalogue, intake
from referral_broker.services.catalogue import ClinicChoice, ConsentText
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.patient.submission_guard import admit_submission, provide_submit_counter
from referral_broker.web.state import provide_broker


def inline_json_schema(type_: Any) -> dict[str, Any]:
    """msgspec's own JSON Schema of `type_`, with its definitions inlined.

    msgspec decodes the body, so its schema is what the server enforces: lengths, patterns, formats, and
    `additionalProperties: false` for every Struct with `forbid_unknown_fields`.
    """
    schema = msgspec.json.schema(type_)
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


class FieldErrorBody(msgspec.Struct, frozen=True):
    field: str
    code: str
    message: str


class InvalidRequestBody(msgspec.Struct, frozen=True):
    """Every wrong field at once (`web/errors.invalid_request`)."""

    errors: list[FieldErrorBody]


class ErrorBody(msgspec.Struct, frozen=True):
    """A refusal with one reason (`web/errors.http_error`)."""

    error: str


REFERRAL_REQUEST_SCHEMA = inline_json_schema(ReferralRequest)


@dataclass
class SubmitOperation(Operation):
    """The handler reads the raw body (to name every wrong field), so Litestar cannot see its type:
    the request body and the `Idempotency-Key` header are documented here instead."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=cast(Schema, REFERRAL_REQUEST_SCHEMA))},
            description="The referral. Unknown fields are refused.",
            required=True,
        )
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

    @post(
        "/referrals",
        status_code=201,
        operation_class=SubmitOperation,
        responses={
            200: ResponseSpec(Receipt, description="A repeat under the same Idempotency-Key: the first receipt"),
            400: ResponseSpec(ErrorBody, description="The request could not be read"),
            413: ResponseSpec(ErrorBody, description="The body is larger than REFERRAL_BROKER_MAX_BODY_BYTES"),
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
