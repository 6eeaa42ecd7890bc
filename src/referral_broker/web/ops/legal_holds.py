"""Legal holds on /ops: place one on a referral by its reference (reason category and a note without personal
data), see which referrals are held, release one. Placing and releasing need the `operator` role (the router's
guard); both are audited by the service (docs/decisions/0057)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from referral_broker.domain.legal_hold import NOTE_MAX, HoldReason, HoldRefused, reason_of
from referral_broker.services import legal_hold
from referral_broker.services.operators import SignedIn
from referral_broker.web.ops.access import broker_of
from referral_broker.web.ops.display import ops_page

#: What a finished action says (`ops.holds.done_<action>`); the query names one of these, never free text.
DONE = frozenset({"held", "released", "released_anonymised"})


def _actor(who: SignedIn) -> str:
    return f"operator:{who.username}"


async def _page(
    request: Request[Any, Any, Any],
    who: SignedIn,
    *,
    done: str | None = None,
    error: str | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Template:
    return ops_page(
        request,
        "ops/holds.html",
        {
            "who": who,
            "holds": await legal_hold.current(broker_of(request)),
            "reasons": [r.value for r in HoldReason],
            "note_max": NOTE_MAX,
            "done": f"ops.holds.done_{done}" if done in DONE else None,
            "error": error,
            "typed": typed or {"reference": "", "reason": "", "note": ""},
        },
        status_code=status,
    )


class LegalHoldPages(Controller):
    path = "/holds"

    @get("/")
    async def holds(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn], done: FromQuery[str | None] = None
    ) -> Template:
        return await _page(request, operator, done=done)

    @post("/", status_code=303)
    async def hold(self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn]) -> Template | Redirect:
        form = await request.form()
        typed = {k: str(form.get(k) or "") for k in ("reference", "reason", "note")}
        try:
            reason = reason_of(typed["reason"])
            await legal_hold.place(
                broker_of(request), typed["reference"], reason, typed["note"], actor=_actor(operator)
            )
        except HoldRefused as exc:
            return await _page(request, operator, error=str(exc), typed=typed, status=409)
        return Redirect("/ops/holds?done=held", status_code=303)

    @post("/release", status_code=303)
    async def release(
        self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn]
    ) -> Template | Redirect:
        form = await request.form()
        try:
            done = await legal_hold.release(
                broker_of(request), str(form.get("reference") or ""), actor=_actor(operator)
            )
        except HoldRefused as exc:
            return await _page(request, operator, error=str(exc), status=409)
        return Redirect(f"/ops/holds?done={'released_anonymised' if done.anonymised else 'released'}", status_code=303)
