"""The audit trail for operators and auditors: filter by clinic, action and time, and check that the
hash chain is whole (the same check as `referral-broker audit verify`)."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from referral_broker.services import monitoring
from referral_broker.services.monitoring import AuditFilter, ChainCheck
from referral_broker.services.operators import SignedIn
from referral_broker.web.ops import display
from referral_broker.web.ops.access import broker_of
from referral_broker.web.ops.display import ops_page

PAGE_SIZE = 200
#: What HTML's `datetime-local` input accepts as its value (a valid local date and time string).
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?")


def _when(value: str | None) -> datetime | None:
    """A `datetime-local` field (Oslo time) or a full ISO time; ValueError when it is neither."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=display.OSLO)


def _as_field(value: str) -> str:
    """The time as a `datetime-local` input holds it (Oslo time), or empty when it is no time: a browser would
    show an invalid value empty too, and the page's error says what a time must look like."""
    try:
        parsed = _when(value)
        if parsed is None or _LOCAL_TIME.fullmatch(value):
            return value if parsed else ""
        return parsed.astimezone(display.OSLO).replace(tzinfo=None).isoformat(timespec="seconds")
    except (ValueError, OverflowError):
        return ""


async def _page(
    request: Request[Any, Any, Any], who: SignedIn, form: dict[str, str], check: ChainCheck | None = None
) -> Template:
    broker = broker_of(request)
    error = None
    try:
        wanted = AuditFilter(
            clinic=form["clinic"] or None,
            action=form["action"] or None,
            since=_when(form["since"]),
            until=_when(form["until"]),
        )
    except ValueError:
        error = "ops.audit.bad_time"  # the key of its text
        wanted = AuditFilter()
    events = [] if error else await monitoring.audit_trail(broker, wanted, PAGE_SIZE)
    return ops_page(
        request,
        "ops/audit.html",
        {
            "who": who,
            "form": {**form, "since": _as_field(form["since"]), "until": _as_field(form["until"])},
            "error": error,
            "events": [(e, json.dumps(e.details, sort_keys=True, ensure_ascii=False)) for e in events],
            "page_size": PAGE_SIZE,
            "actions": await monitoring.audit_actions(broker),
            "check": check,
        },
        status_code=400 if error else 200,
    )


class AuditPages(Controller):
    path = "/audit"

    @get("/")
    async def trail(
        self,
        request: Request[Any, Any, Any],
        operator: NamedDependency[SignedIn],
        clinic: FromQuery[str] = "",
        action: FromQuery[str] = "",
        since: FromQuery[str] = "",
        until: FromQuery[str] = "",
    ) -> Template:
        form = {"clinic": clinic.strip(), "action": action.strip(), "since": since.strip(), "until": until.strip()}
        return await _page(request, operator, form)

    @get("/verify")
    async def verify(self, request: Request[Any, Any, Any], operator: NamedDependency[SignedIn]) -> Template:
        check = await monitoring.check_audit_chain(broker_of(request))
        return await _page(request, operator, {"clinic": "", "action": "", "since": "", "until": ""}, check)
