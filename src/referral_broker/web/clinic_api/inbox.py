"""The signed clinic API: each request must carry an RFC 9421 signature by an active key of an active clinic."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery

from referral_broker.services import clinic_auth, clinic_inbox
from referral_broker.services.context import BrokerContext
from referral_broker.store.clinics import ClinicRow
from referral_broker.web.clinic_api.api_document import BODY_RESPONSES, INBOX_RESPONSES, AckOperation, InboxOperation
from referral_broker.web.head_requests import method_as_sent
from referral_protocol.enrolment import AckRequest, AckResult, InboxPage
from referral_protocol.validation import decode_json


async def authenticated_clinic(request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> ClinicRow:
    body = await request.body()
    method = method_as_sent(request.scope)  # a HEAD is signed as HEAD, though it is answered as its GET
    return await clinic_auth.authenticate(broker, method, str(request.url), dict(request.headers), body)


class ClinicInboxApi(Controller):
    """Mounted under `CLINIC_API`, which provides `broker` and the signed-in `clinic`."""

    path = "/"

    @get("/inbox", operation_class=InboxOperation, responses=INBOX_RESPONSES)
    async def inbox(
        self,
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
        limit: FromQuery[int] = 100,
        after: FromQuery[str | None] = None,
    ) -> InboxPage:
        """What waits, oldest first. Pass `after=start`, then each page's `next`, to read on before
        acknowledging: each page then says where the next one begins."""
        return await clinic_inbox.list_inbox(broker, clinic, limit, after)

    @post("/inbox/ack", status_code=200, operation_class=AckOperation, responses=BODY_RESPONSES)
    async def ack(
        self,
        request: Request[Any, Any, Any],
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
    ) -> AckResult:
        return await clinic_inbox.acknowledge(broker, clinic, decode_json(await request.body(), AckRequest))
