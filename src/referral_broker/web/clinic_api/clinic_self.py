"""The signed clinic API beyond the inbox: the clinic's own status, new keys, and refused envelopes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency

from referral_broker.services import clinic_keys, clinic_status
from referral_broker.services.context import BrokerContext
from referral_broker.store.clinics import ClinicRow
from referral_broker.web.clinic_api.api_document import (
    BODY_RESPONSES,
    KEY_REQUEST_RESPONSES,
    STATUS_RESPONSES,
    KeyRequestOperation,
    RefuseOperation,
)
from referral_protocol.enrolment import ClinicStatusReport, KeyRequestAnswer, RefusalRequest, RefusalResult
from referral_protocol.validation import decode_json


class ClinicSelfApi(Controller):
    """Mounted under `CLINIC_API`, which provides `broker` and the signed-in `clinic`."""

    path = "/"

    @get("/status", responses=STATUS_RESPONSES)
    async def status(
        self, clinic: NamedDependency[ClinicRow], broker: NamedDependency[BrokerContext]
    ) -> ClinicStatusReport:
        return await clinic_status.status(broker, clinic)

    @post("/inbox/refuse", status_code=200, operation_class=RefuseOperation, responses=BODY_RESPONSES)
    async def refuse(
        self,
        request: Request[Any, Any, Any],
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
    ) -> RefusalResult:
        return await clinic_status.refuse(broker, clinic, decode_json(await request.body(), RefusalRequest))

    @post("/keys", status_code=201, operation_class=KeyRequestOperation, responses=KEY_REQUEST_RESPONSES)
    async def request_key(
        self,
        request: Request[Any, Any, Any],
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
    ) -> KeyRequestAnswer:
        """A key request (`referral-clinic/key-request/v1`) endorsed by an active signing key of the caller."""
        return await clinic_keys.request_key(broker, await request.body(), actor=f"clinic:{clinic.slug}", caller=clinic)
