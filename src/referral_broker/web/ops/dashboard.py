"""The operator's dashboard and the actions on it: retry a dead delivery, suspend or re-activate a
clinic, verify a clinic's pending keys with the fingerprint typed in (never shown)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from referral_broker.services import clinic_keys, monitoring, operator_actions, signing_rotation
from referral_broker.services.operators import SignedIn
from referral_broker.web.ops import display
from referral_broker.web.ops.access import broker_of
from referral_broker.web.ops.charts import latency_chart, throughput_chart
from referral_protocol.errors import DomainError

#: What a finished action says (`ops.done.<action>`); the query names one of these, so nothing a visitor sends
#: is echoed.
DONE = frozenset({"retried", "suspended", "reactivated", "verified"})


def _actor(who: SignedIn) -> str:
    return f"operator:{who.username}"


async def _page(
    request: Request[Any, Any, Any],
    who: SignedIn,
    *,
    done: str | None = None,
    clinic: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Template:
    board = await monitoring.dashboard(broker_of(request))
    # The clinic a finished action was about, named from the board (never echoed from the query).
    names = {w.delivery.slug: w.delivery.name for w in board.clinics}
    undeliverable = await clinic_keys.undeliverable_summary(broker_of(request))
    signing = await signing_rotation.status(broker_of(request))
    t = display.ops_translator(request)
    return display.ops_page(
        request,
        "ops/dashboard.html",
        {
            "who": who,
            "board": board,
            "undeliverable": undeliverable,
            "signing": signing,
            "throughput": throughput_chart(board.last_day, t),
            "latency": latency_chart(board.last_day, t),
            "done": f"ops.done.{done}" if done in DONE else None,
            "done_clinic": names.get(clinic or "", ""),
            "error": error,
            "reminder_after": display.seconds(broker_of(request).settings.pull_reminder_after_seconds, t),
        },
        status_code=status,
    )


class DashboardPages(Controller):
    path = "/"

    @get("/")
    async def dashboard(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[SignedIn],
        done: FromQuery[str | None] = None,
        clinic: FromQuery[str | None] = None,
    ) -> Template:
        return await _page(request, operator, done=done, clinic=clinic)

    async def _act(
        self, request: Request[Any, Any, Any], who: SignedIn, action: Any, done: str, clinic: str | None = None
    ) -> Response[Any]:
        try:
            await action
        except DomainError as exc:
            return await _page(request, who, error=str(exc), status=409)
        query = urlencode([("done", done), *([("clinic", clinic)] if clinic else [])])
        return Redirect(f"/ops?{query}", status_code=303)

    @post("/deliveries/{delivery_id:uuid}/retry", status_code=303)
    async def retry(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], delivery_id: FromPath[uuid.UUID]
    ) -> Response[Any]:
        broker = broker_of(request)
        return await self._act(
            request,
            operator,
            operator_actions.retry_dead_delivery(broker, delivery_id, actor=_actor(operator)),
            "retried",
        )

    @post("/clinics/{slug:str}/suspend", status_code=303)
    async def suspend(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], slug: FromPath[str]
    ) -> Response[Any]:
        broker = broker_of(request)
        if (await request.form()).get("confirm") != "yes":
            # One click asks; the second, on a page that names the clinic and what suspending does, acts.
            board = await monitoring.dashboard(broker)
            named = next((w.delivery for w in board.clinics if w.delivery.slug == slug), None)
            if named is None:
                return await _page(request, operator, error=f"no clinic called {slug!r}", status=409)
            return display.ops_page(
                request, "ops/confirm_suspend.html", {"who": operator, "slug": named.slug, "name": named.name}
            )
        return await self._act(
            request,
            operator,
            operator_actions.suspend_clinic(broker, slug, actor=_actor(operator)),
            "suspended",
            clinic=slug,
        )

    @post("/clinics/{slug:str}/reactivate", status_code=303)
    async def reactivate(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], slug: FromPath[str]
    ) -> Response[Any]:
        broker = broker_of(request)
        return await self._act(
            request,
            operator,
            operator_actions.reactivate_clinic(broker, slug, actor=_actor(operator)),
            "reactivated",
            clinic=slug,
        )

    @post("/clinics/{slug:str}/verify", status_code=303)
    async def verify(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], slug: FromPath[str]
    ) -> Response[Any]:
        form = await request.form()
        fingerprint = str(form.get("fingerprint") or "")
        broker = broker_of(request)
        return await self._act(
            request,
            operator,
            operator_actions.verify_clinic_keys(broker, slug, fingerprint, actor=_actor(operator)),
            "verified",
            clinic=slug,
        )
