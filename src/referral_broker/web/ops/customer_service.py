"""Customer service under /ops: the list of messages (what any signed-in account may see: no content), one
message opened (the `operator` role only; every opening audited), answered by e-mail, and closed."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from referral_broker.adapters.configured import configured_reply_sender
from referral_broker.services import customer_service
from referral_broker.services.customer_service import AnswerNotSent, CustomerServiceRefused
from referral_broker.services.operators import SignedIn
from referral_broker.services.ports import ReplySender
from referral_broker.web.ops import display
from referral_broker.web.ops.access import broker_of

#: What a finished action says (`ops.done.<action>`); the query names one of these, so nothing sent is echoed.
DONE = frozenset({"answered", "closed"})


def provide_reply_sender(request: Request[Any, Any, Any]) -> ReplySender:
    return configured_reply_sender(broker_of(request).settings)


def _actor(who: SignedIn) -> str:
    return f"operator:{who.username}"


async def _message_page(
    request: Request[Any, Any, Any],
    who: SignedIn,
    message_id: uuid.UUID,
    *,
    done: str | None = None,
    error: str | None = None,
    typed: str = "",
    status: int = 200,
) -> Template:
    broker = broker_of(request)
    try:
        opened = await customer_service.read(broker, message_id, actor=_actor(who))
    except CustomerServiceRefused as exc:
        return display.ops_page(
            request, "ops/message.html", {"who": who, "opened": None, "error": str(exc)}, status_code=404
        )
    closed_at = opened.facts.closed_at
    return display.ops_page(
        request,
        "ops/message.html",
        {
            "who": who,
            "opened": opened,
            "done": f"ops.done.{done}" if done in DONE else None,
            "error": error,
            "typed": typed,
            "retention_days": broker.settings.customer_service_retention_days,
            "deleted_after": closed_at + customer_service.retention_period(broker) if closed_at else None,
        },
        status_code=status,
    )


class CustomerServicePages(Controller):
    path = "/messages"

    @get("/")
    async def messages(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], done: FromQuery[str | None] = None
    ) -> Template:
        broker = broker_of(request)
        period = customer_service.retention_period(broker)
        return display.ops_page(
            request,
            "ops/messages.html",
            {
                "who": operator,
                "waiting": await customer_service.waiting(broker),
                "closed": await customer_service.closed(broker),
                "period": period,
                "done": f"ops.done.{done}" if done in DONE else None,
            },
        )

    @get("/{message_id:uuid}", opt={"ops_operator_only": True})
    async def message(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[SignedIn],
        message_id: FromPath[uuid.UUID],
        done: FromQuery[str | None] = None,
    ) -> Template:
        return await _message_page(request, operator, message_id, done=done)

    @post("/{message_id:uuid}/answer", status_code=303)
    async def answer(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[SignedIn],
        reply_sender: NamedDependency[ReplySender],
        message_id: FromPath[uuid.UUID],
    ) -> Response[Any]:
        form = await request.form()
        raw = form.get("answer")
        typed = raw if isinstance(raw, str) else ""
        text, errors = customer_service.check_answer(typed)
        if text is None:
            key = f"ops.cs.answer_{errors[0].code}"
            return await _message_page(request, operator, message_id, error=key, typed=typed, status=422)
        try:
            await customer_service.answer(
                broker_of(request),
                message_id,
                text,
                by=operator.username,
                actor=_actor(operator),
                sender=reply_sender,
            )
        except (CustomerServiceRefused, AnswerNotSent) as exc:
            return await _message_page(request, operator, message_id, error=str(exc), typed=typed, status=409)
        return Redirect(f"/ops/messages/{message_id}?done=answered", status_code=303)

    @post("/{message_id:uuid}/close", status_code=303)
    async def close(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], message_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        try:
            await customer_service.close(broker_of(request), message_id, actor=_actor(operator))
        except CustomerServiceRefused as exc:
            return await _message_page(request, operator, message_id, error=str(exc), status=409)
        return Redirect("/ops/messages?done=closed", status_code=303)
