"""The signed clinic API: each request must carry an RFC 9421 signature by an active key of an active clinic."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromQuery, QueryParameter

from referral_broker.services import clinic_auth, clinic_inbox, inbox_waiting
from referral_broker.services.context import BrokerContext
from referral_broker.services.inbox_waiting import InboxWaiters
from referral_broker.store.clinics import ClinicRow
from referral_broker.web.clinic_api.api_document import BODY_RESPONSES, INBOX_RESPONSES, AckOperation, InboxOperation
from referral_broker.web.head_requests import method_as_sent
from referral_protocol.enrolment import AckRequest, AckResult, InboxPage
from referral_protocol.validation import decode_json


async def authenticated_clinic(request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> ClinicRow:
    body = await request.body()
    method = method_as_sent(request.scope)  # a HEAD is signed as HEAD, though it is answered as its GET
    return await clinic_auth.authenticate(broker, method, str(request.url), dict(request.headers), body)


#: Read as text, so that a wrong value is a 400 naming `wait` like every other field error; documented as what it is.
_WAIT = QueryParameter(
    name="wait",
    description=f"seconds to hold an empty answer until something arrives (0 to {inbox_waiting.MAX_WAIT}; 0: at once)",
    schema_extra={"oneOf": [{"type": "integer", "minimum": 0, "maximum": inbox_waiting.MAX_WAIT}], "default": 0},
)


class ClinicInboxApi(Controller):
    """Mounted under `CLINIC_API`, which provides `broker` and the signed-in `clinic`."""

    path = "/"

    @get("/inbox", operation_class=InboxOperation, responses=INBOX_RESPONSES)
    async def inbox(
        self,
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
        request: Request[Any, Any, Any],
        limit: FromQuery[int] = 100,
        after: FromQuery[str | None] = None,
        wait: Annotated[str | None, _WAIT] = None,
    ) -> InboxPage:
        """What waits, oldest first. Pass `after=start`, then each page's `next`, to read on before
        acknowledging: each page then says where the next one begins. With `wait=N` (whole seconds, at
        most 25) an empty inbox is not answered at once: the answer comes as soon as something arrives
        for the clinic, or after N seconds as the usual empty page."""
        seconds = inbox_waiting.parse_wait(wait)
        waiters: InboxWaiters = request.app.state.inbox_waiters
        try:
            return await inbox_waiting.list_or_wait(broker, waiters, clinic, limit, after, seconds)
        except inbox_waiting.WaitRefused as exc:
            raise HTTPException(
                detail=str(exc), status_code=exc.status, headers={"retry-after": str(exc.retry_after)}
            ) from None

    @post("/inbox/ack", status_code=200, operation_class=AckOperation, responses=BODY_RESPONSES)
    async def ack(
        self,
        request: Request[Any, Any, Any],
        clinic: NamedDependency[ClinicRow],
        broker: NamedDependency[BrokerContext],
    ) -> AckResult:
        return await clinic_inbox.acknowledge(broker, clinic, decode_json(await request.body(), AckRequest))
