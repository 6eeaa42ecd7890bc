"""The patient's pages: find clinics (`GET /`), fill in the form for the chosen ones (`GET /send`), send it
(`POST /send`) and read the receipt. Server-rendered; nothing needs JavaScript.

The receipt is the answer to the POST itself, not a redirect: the manage link's secret is shown once, in
that page's body, and never travels in a URL that a server or proxy might log.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.response import Template

from referral_broker.services import catalogue, intake
from referral_broker.services.catalogue import ClinicChoice
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.i18n import Translator
from referral_broker.web.patient.page import language_of, render, switch_link
from referral_broker.web.patient.referral_form import HONEYPOT_FIELD, ReferralForm, messages_by_field
from referral_broker.web.patient.submission_guard import admit_submission
from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.errors import FieldError, InvalidRequest

NORWAY = ZoneInfo("Europe/Oslo")


def _filtered(clinics: list[ClinicChoice], category: str | None, city: str | None) -> list[ClinicChoice]:
    return [
        c
        for c in clinics
        if (not category or category in c.categories) and (not city or (c.city or "").casefold() == city.casefold())
    ]


def _home(
    request: Request[Any, Any, Any],
    clinics: list[ClinicChoice],
    *,
    category: str | None,
    city: str | None,
    chosen: list[str],
    error: str | None = None,
) -> Template:
    category = category if category in CATEGORIES else None
    cities = sorted({c.city for c in clinics if c.city}, key=str.casefold)
    city = next((c for c in cities if city and c.casefold() == city.casefold()), None)
    return render(
        request,
        "patient/home.html",
        status_code=400 if error else 200,
        clinics=_filtered(clinics, category, city),
        any_clinics=bool(clinics),
        categories=sorted(CATEGORIES),
        cities=cities,
        category=category or "",
        city=city or "",
        chosen=set(chosen),
        error=error,
    )


def _form_page(
    request: Request[Any, Any, Any],
    form: ReferralForm,
    chosen: list[ClinicChoice],
    *,
    errors: list[FieldError],
    minimum_age: int,
) -> Template:
    t = Translator(language_of(request))
    messages = messages_by_field(errors, t, minimum_age=minimum_age)
    return render(
        request,
        "patient/form.html",
        status_code=422 if errors else 200,
        switch_url=switch_link(request, keep=[("clinic", c.slug) for c in chosen]),
        form=form,
        chosen=chosen,
        clinic_names=t.listing([c.name for c in chosen]),
        errors=messages,
        categories=sorted(CATEGORIES),
        consent_version=CONSENT_VERSION,
        honeypot_field=HONEYPOT_FIELD,
    )


class PatientPages(Controller):
    path = "/"
    include_in_schema = False

    @get("/")
    async def home(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        category: FromQuery[str | None] = None,
        city: FromQuery[str | None] = None,
        clinic: FromQuery[list[str] | None] = None,
    ) -> Template:
        clinics = await catalogue.choosable_clinics(broker)
        return _home(request, clinics, category=category, city=city, chosen=clinic or [])

    @get("/send")
    async def form(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        clinic: FromQuery[list[str] | None] = None,
        category: FromQuery[str | None] = None,
    ) -> Template:
        wanted = list(dict.fromkeys(clinic or []))
        clinics = await catalogue.choosable_clinics(broker)
        by_slug = {c.slug: c for c in clinics}
        t = Translator(language_of(request))
        if not wanted or any(slug not in by_slug for slug in wanted):
            error = t("home.choose_error") if not wanted else t("home.unknown_clinic")
            chosen_known = [slug for slug in wanted if slug in by_slug]
            return _home(request, clinics, category=category, city=None, chosen=chosen_known, error=error)
        form = ReferralForm(clinics=wanted, category=category if category in CATEGORIES else "")
        return _form_page(
            request, form, [by_slug[s] for s in wanted], errors=[], minimum_age=broker.settings.minimum_age
        )

    @post("/send")
    async def send(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Template:
        wait = await admit_submission(request, broker, submit_counter)
        if wait:
            return render(
                request, "patient/error.html", status_code=429, headers={"retry-after": str(wait)}, problem="too_many"
            )
        form = ReferralForm.from_form(await request.form())
        if form.honeypot:
            # Refused like any other bad request, and nothing is stored; see docs/architecture.md.
            return render(request, "patient/error.html", status_code=400, problem="refused")
        clinics = {c.slug: c for c in await catalogue.choosable_clinics(broker)}
        chosen = [clinics[s] for s in form.clinics if s in clinics]
        minimum_age = broker.settings.minimum_age
        today = broker.clock().astimezone(NORWAY).date()
        referral, errors = form.to_request(today=today, minimum_age=minimum_age)
        if referral is not None:
            try:
                receipt, repeated = await intake.submit_once(broker, referral, idempotency_key=form.submission)
            except InvalidRequest as exc:
                errors = exc.errors
            else:
                return render(
                    request,
                    "patient/receipt.html",
                    switch_url=None,
                    receipt=receipt,
                    repeated=repeated,
                    clinic_names=[clinics[s].name if s in clinics else s for s in form.clinics],
                )
        return _form_page(request, form, chosen, errors=errors, minimum_age=minimum_age)
