"""The patient's rights without the manage link (issue 4): ask for a one-time code by e-mail or text
message, enter it, then see, download, correct, withdraw or erase the requests linked to that address.

- `GET /rights`: what the rights are, and two small forms (e-mail, or mobile number). `POST /rights/code`
  sends a code and answers with the code page; the page is the same whether or not the address has
  requests, and the address never travels in a URL (the code id is a hidden field).
- `POST /rights/verify`: the right code opens a short session (cookie `__Host-rights`, HttpOnly,
  SameSite=Strict) and redirects to `GET /rights/requests`; any session the browser held before is ended.
- `GET /rights/requests`, `GET /rights/export.json`, and the actions, each a POST with the CSRF token
  and a confirm step where it cannot be undone. An action's answer is the list again with what it did.
- A missing or ended session goes back to `/rights` with a message. Every answer is `no-store` (global).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Redirect, Template

from referral_broker.domain.retention import LOCAL_TIME
from referral_broker.services import rights
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import CodeNotSent
from referral_broker.services.rights import CHANNELS, CodeRefused, LinkedView, NotLinked, RightsSession, TooManyCodes
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.i18n import Translator
from referral_broker.web.patient.manage_pages import patient_status
from referral_broker.web.patient.page import language_of, render
from referral_broker.web.patient.referral_form import messages_by_field
from referral_broker.web.patient.rights_access import (
    admit_code_request,
    code_sender_of,
    ended_cookie,
    session_cookie,
    session_token,
)
from referral_broker.web.patient.rights_views import (
    CorrectionForm,
    Done,
    card,
    day,
    not_received,
    stoppable,
    told_about,
)
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.notice import NoticeKind

START = "/rights"
REQUESTS = "/rights/requests"
CODE_PAGE = "/rights/code"
#: Why the start page was reached by a redirect: a query word, never anything personal.
_ARRIVALS = frozenset({"ended", "signed_out"})
_NO_NEEDS = {"minimum_age": 0}  # no rights form can give the age error; messages_by_field asks for it


def _t(request: Request[Any, Any, Any]) -> Translator:
    return Translator(language_of(request))


def _to_requests_switch(request: Request[Any, Any, Any]) -> str:
    """The language switch of a page made by a POST: it leads to the list, in another language."""
    return REQUESTS


def _back_to_start(arrival: str = "ended") -> Response[Any]:
    response: Response[Any] = Redirect(f"{START}?{urlencode([('session', arrival)])}", status_code=303)
    response.set_cookie(ended_cookie())
    return response


def _start_page(
    request: Request[Any, Any, Any],
    *,
    typed: dict[str, str] | None = None,
    errors: list[FieldError] | None = None,
    problem: str | None = None,
    arrival: str | None = None,
    signed_in: bool = False,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Template:
    made_by_post = request.method != "GET"
    return render(
        request,
        "patient/rights.html",
        status_code=status_code,
        headers=headers,
        switch_url=None if made_by_post else "?",
        typed={"email": "", "phone": "", **(typed or {})},
        errors=messages_by_field(errors or [], _t(request), **_NO_NEEDS),
        problem=problem,
        arrival=arrival if arrival in _ARRIVALS else None,
        signed_in=signed_in,
    )


def _code_page(
    request: Request[Any, Any, Any],
    code_id: str,
    channel: str,
    minutes: int,
    *,
    refused: bool = False,
    empty: bool = False,
    spent: bool = False,
) -> Template:
    return render(
        request,
        "patient/rights_code.html",
        status_code=422 if refused or empty else 200,
        # The code id is random and opens nothing without the code (five tries in all), so the switch may carry
        # it: the same code page in another language, the code field empty.
        switch_url=f"{CODE_PAGE}?{urlencode([('id', code_id), ('channel', channel)])}",
        code_id=code_id,
        channel=channel if channel in CHANNELS else "email",
        minutes=minutes,
        refused=refused,
        empty=empty,
        spent=spent,
    )


async def _requests_page(
    request: Request[Any, Any, Any],
    broker: BrokerContext,
    session: RightsSession,
    *,
    done: Done | None = None,
    problem: str | None = None,
    status_code: int = 200,
) -> Template:
    t = _t(request)
    views = await rights.overview(broker, session)
    return render(
        request,
        "patient/rights_requests.html",
        status_code=status_code,
        switch_url=_to_requests_switch(request),
        cards=[card(t, v) for v in views],
        channel=session.channel,
        expires=t.when(session.expires_at),
        done=done,
        problem=problem,
    )


async def _signed_in(request: Request[Any, Any, Any], broker: BrokerContext) -> RightsSession | None:
    return await rights.session_of(broker, session_token(request))


def _one(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


class RightsPages(Controller):
    path = START
    include_in_schema = False

    # --- asking for a code, and entering it -----------------------------------------------------

    @get("/")
    async def start(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        session: FromQuery[str | None] = None,
    ) -> Template:
        signed_in = await _signed_in(request, broker) is not None
        return _start_page(request, arrival=session, signed_in=signed_in)

    @post("/code", status_code=200)
    async def ask_for_code(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Template:
        form = await request.form()
        channel = _one(form, "channel")
        channel = channel if channel in CHANNELS else "email"
        value = _one(form, channel)
        typed = {channel: value}
        wait = await admit_code_request(request, broker, submit_counter)
        if wait:
            return _start_page(
                request, typed=typed, problem="too_many_here", status_code=429, headers={"retry-after": str(wait)}
            )
        if not value.strip():
            return _start_page(
                request, typed=typed, errors=[FieldError(channel, "required", "required")], status_code=422
            )
        try:
            code_id = await rights.request_code(broker, code_sender_of(request), channel, value)
        except InvalidRequest as exc:
            return _start_page(request, typed=typed, errors=exc.errors, status_code=422)
        except TooManyCodes:
            return _start_page(request, typed=typed, problem="too_many_codes", status_code=429)
        except CodeNotSent:
            return _start_page(request, typed=typed, problem="not_sent", status_code=503)
        return _code_page(request, str(code_id), channel, broker.settings.rights_code_minutes)

    @post("/verify", status_code=303)
    async def enter_code(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        form = await request.form()
        code_id, channel, code = _one(form, "code_id"), _one(form, "channel"), _one(form, "code")
        minutes = broker.settings.rights_code_minutes
        if not code.strip():
            return _code_page(request, code_id, channel, minutes, empty=True)
        try:
            token, _ = await rights.verify_code(broker, code_id, code)
        except CodeRefused as exc:
            return _code_page(request, code_id, channel, minutes, refused=True, spent=exc.spent)
        await rights.end_session(broker, session_token(request))  # whatever session this browser held before
        response: Response[Any] = Redirect(REQUESTS, status_code=303)
        response.set_cookie(session_cookie(token))
        return response

    # --- what a session sees -------------------------------------------------------------------

    @get("/code")
    async def code_page(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        id: FromQuery[str] = "",
        channel: FromQuery[str] = "email",
    ) -> Response[Any]:
        """The code page again, in the language the switch chose; a code id of the wrong shape starts over."""
        try:
            uuid.UUID(id)
        except ValueError:
            return _back_to_start()
        return _code_page(request, id, channel, broker.settings.rights_code_minutes)

    @get("/requests")
    async def requests(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Response[Any]:
        session = await _signed_in(request, broker)
        if session is None:
            return _back_to_start()
        return await _requests_page(request, broker, session)

    @get("/export.json")
    async def export_json(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        session = await _signed_in(request, broker)
        if session is None:
            return _back_to_start()
        return Response(
            content=await rights.export(broker, session),
            media_type="application/json",
            headers={
                "content-disposition": 'attachment; filename="referral-broker-my-data.json"',
                "cache-control": "no-store",
            },
        )

    @get("/export")
    async def export_page(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        """The export as a readable, printable page: the same document the JSON download is made of."""
        session = await _signed_in(request, broker)
        if session is None:
            return _back_to_start()
        document = await rights.export_document(broker, session, form="page")
        language = language_of(request)
        return render(
            request,
            "patient/rights_export.html",
            document=document,
            explanation=document.explanation.get(language, document.explanation["nb"]),
            patient_status=patient_status,
        )

    @post("/sign-out", status_code=303)
    async def sign_out(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Response[Any]:
        await rights.end_session(broker, session_token(request))
        return _back_to_start("signed_out")

    # --- correcting contact details ------------------------------------------------------------

    @post("/correct", status_code=200)
    async def correction_form(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        found = await _linked(request, broker)
        if not isinstance(found, tuple):
            return found
        _, view = found
        return _correction_page(request, view, CorrectionForm.of(view), [])

    @post("/correct/save", status_code=200)
    async def correct(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Response[Any]:
        found = await _linked(request, broker)
        if not isinstance(found, tuple):
            return found
        session, view = found
        typed = CorrectionForm.from_form(await request.form())
        today = broker.clock().astimezone(LOCAL_TIME).date()
        corrected, errors = typed.to_patient(today=today)
        if corrected is None:
            return _correction_page(request, view, typed, errors)
        try:
            result = await rights.rectify(broker, session, view.reference, corrected)
        except NotLinked:
            return await _requests_page(request, broker, session, problem="not_linked", status_code=404)
        t = _t(request)
        done = Done(
            kind="corrected" if result.changed else "unchanged",
            reference=view.reference,
            told=result.reach.told,
            with_referral=result.reach.with_referral,
            changed=[t(f"form.{name}") for name in result.changed],
            still_linked=result.still_linked,
        )
        return await _requests_page(request, broker, session, done=done)

    # --- withdrawing consent, erasing ----------------------------------------------------------

    @post("/withdraw", status_code=200)
    async def confirm_withdrawal(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        return await _confirm_page(request, broker, "withdraw")

    @post("/erase", status_code=200)
    async def confirm_erasure(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]
    ) -> Response[Any]:
        return await _confirm_page(request, broker, "erase")

    @post("/withdraw/confirm", status_code=200)
    async def withdraw(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Response[Any]:
        found = await _linked(request, broker)
        if not isinstance(found, tuple):
            return found
        session, view = found
        try:
            stopped = await rights.withdraw(broker, session, view.reference)
        except NotLinked:
            return await _requests_page(request, broker, session, problem="not_linked", status_code=404)
        done = Done(
            kind="withdrawn",
            reference=view.reference,
            stopped=stoppable(view),
            told=stopped.reach.told,
            not_told=stopped.reach.not_told,
        )
        return await _requests_page(request, broker, session, done=done)

    @post("/erase/confirm", status_code=200)
    async def erase(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Response[Any]:
        found = await _linked(request, broker)
        if not isinstance(found, tuple):
            return found
        session, view = found
        try:
            stopped = await rights.erase(broker, session, view.reference)
        except NotLinked:
            return await _requests_page(request, broker, session, problem="not_linked", status_code=404)
        except rights.HeldForLegalClaim:
            return await _requests_page(request, broker, session, problem="held", status_code=409)
        done = Done(
            kind="erased",
            reference=view.reference,
            stopped=stoppable(view),
            told=stopped.reach.told,
            not_told=stopped.reach.not_told,
        )
        return await _requests_page(request, broker, session, done=done)


async def _linked(
    request: Request[Any, Any, Any], broker: BrokerContext
) -> tuple[RightsSession, LinkedView] | Response[Any]:
    """The session and the referral the form names, or the answer to give instead."""
    session = await _signed_in(request, broker)
    if session is None:
        return _back_to_start()
    reference = _one(await request.form(), "reference")
    try:
        return session, await rights.find(broker, session, reference)
    except NotLinked:
        return await _requests_page(request, broker, session, problem="not_linked", status_code=404)


def _correction_page(
    request: Request[Any, Any, Any], view: LinkedView, typed: CorrectionForm, errors: list[FieldError]
) -> Template:
    return render(
        request,
        "patient/rights_correct.html",
        status_code=422 if errors else 200,
        switch_url=_to_requests_switch(request),
        reference=view.reference,
        form=typed,
        errors=messages_by_field(errors, _t(request), **_NO_NEEDS),
        told=told_about(view, NoticeKind.CORRECTION),
        contact_readable=view.contact is not None,
    )


async def _confirm_page(request: Request[Any, Any, Any], broker: BrokerContext, action: str) -> Response[Any]:
    found = await _linked(request, broker)
    if not isinstance(found, tuple):
        return found
    session, view = found
    if action == "erase" and view.held:  # said before the patient confirms, not after
        return await _requests_page(request, broker, session, problem="held", status_code=409)
    t = _t(request)
    kind = NoticeKind.ERASURE if action == "erase" else NoticeKind.WITHDRAWAL
    return render(
        request,
        "patient/rights_confirm.html",
        switch_url=_to_requests_switch(request),
        action=action,
        reference=view.reference,
        submitted=card(t, view).submitted,
        clinics=[d.clinic_name for d in view.deliveries],
        stopped=stoppable(view),
        told=told_about(view, kind) if action == "erase" or view.withdrawn_at is None else [],
        not_told=not_received(view) if action == "erase" or view.withdrawn_at is None else [],
        confirm_url=f"/rights/{action}/confirm",
        cancel_url=REQUESTS,
        withdrawn=view.withdrawn_at is not None,
        today=day(t, broker.clock()),
    )
