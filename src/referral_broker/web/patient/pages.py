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

from referral_broker.services import catalogue, intake, manage
from referral_broker.services.catalogue import ClinicChoice
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import Admission, WindowCounter
from referral_broker.web.i18n import LANGUAGES, Translator
from referral_broker.web.patient.manage_pages import not_found_page
from referral_broker.web.patient.page import language_of, render, switch_link
from referral_broker.web.patient.referral_form import HONEYPOT_FIELD, ReferralForm, messages_by_field
from referral_broker.web.patient.submission_guard import admit_submission
from referral_protocol.categories import CATEGORIES
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.errors import FieldError, InvalidRequest
from referral_protocol.referral import Receipt

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
    limited: Admission | None = None,
    submit_rate: int = 0,
) -> Template:
    t = Translator(language_of(request))
    messages = messages_by_field(errors, t, minimum_age=minimum_age)
    status_code, headers = (422 if errors else 200), None
    if limited is not None:
        status_code, headers = 429, {"retry-after": str(limited.retry_after_seconds)}
    elif not errors:
        # The empty form may come from the browser's cache on Back, with the same one-time key (and the browser
        # refills what was typed), so Back and Send again repeats the first referral instead of making a second;
        # see docs/decisions/0063. It holds nothing personal. Forms with what was typed stay no-store.
        headers = {"cache-control": "private, no-cache"}
    return render(
        request,
        "patient/form.html",
        status_code=status_code,
        headers=headers,
        limited=limited.limit if limited is not None else None,
        submit_rate=submit_rate,
        switch_url=switch_link(request, keep=[("clinic", c.slug) for c in chosen]),
        form=form,
        chosen=chosen,
        clinic_names=t.listing([c.name for c in chosen]),
        errors=messages,
        categories=sorted(CATEGORIES),
        consent_version=CONSENT_VERSION,
        honeypot_field=HONEYPOT_FIELD,
    )


def _receipt_page(
    request: Request[Any, Any, Any],
    receipt: Receipt,
    *,
    repeated: bool,
    clinic_names: list[str],
) -> Template:
    """The receipt. Its language switch is a form that posts the manage token, already on this page, to
    `POST /receipt`: a link would leave the only copy of the private link behind, or put it in a URL."""
    language = language_of(request)
    return render(
        request,
        "patient/receipt.html",
        switch_url=None,
        receipt=receipt,
        repeated=repeated,
        clinic_names=clinic_names,
        manage_token=receipt.manage_url.rsplit("/", 1)[-1],
        receipt_languages=[(other, Translator(other)) for other in LANGUAGES if other != language],
    )


def _names(clinics: dict[str, ClinicChoice], form: ReferralForm) -> list[str]:
    return [clinics[s].name if s in clinics else s for s in form.clinics]


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

    @post("/receipt", status_code=200)
    async def receipt_again(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Template:
        """The receipt in the language `?lang=` names, for the manage token the receipt's switch posts."""
        token = (await request.form()).get("token")
        view = await manage.look_up(broker, token) if isinstance(token, str) else None
        if view is None or not isinstance(token, str):
            return not_found_page(request)
        receipt = Receipt(
            reference=view.referral.reference,
            manage_url=f"{broker.settings.public_url}/manage/{token}",
            submitted_at=view.referral.created_at,
            deliveries=[],
        )
        return _receipt_page(request, receipt, repeated=False, clinic_names=[d.clinic_name for d in view.deliveries])

    @post("/send")
    async def send(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Template:
        admission = await admit_submission(request, broker, submit_counter)
        form = ReferralForm.from_form(await request.form())
        clinics = {c.slug: c for c in await catalogue.choosable_clinics(broker)}
        chosen = [clinics[s] for s in form.clinics if s in clinics]
        minimum_age = broker.settings.minimum_age
        referral, errors = form.to_request(today=broker.clock().astimezone(NORWAY).date(), minimum_age=minimum_age)
        if not admission.admitted and referral is not None:
            # Back and Send again past the limit: the first receipt, not "not sent yet" (it was sent).
            earlier = await intake.earlier_receipt(broker, referral, idempotency_key=form.submission)
            if earlier is not None:
                return _receipt_page(request, earlier, repeated=True, clinic_names=_names(clinics, form))
        if not admission.admitted:
            # The form again, with what was typed and why it was not sent (issue 22, item 4).
            return _form_page(
                request,
                form,
                chosen,
                errors=[],
                minimum_age=minimum_age,
                limited=admission,
                submit_rate=broker.settings.submit_rate,
            )
        if form.honeypot:
            await admission.settle("refused")
            # Refused like any other bad request, and nothing is stored; see docs/architecture.md.
            return render(request, "patient/error.html", status_code=400, problem="refused")
        if referral is not None:
            try:
                receipt, repeated = await intake.submit_once(broker, referral, idempotency_key=form.submission)
            except InvalidRequest as exc:
                errors = exc.errors
            else:
                await admission.settle("neither" if repeated else "accepted")
                return _receipt_page(request, receipt, repeated=repeated, clinic_names=_names(clinics, form))
        await admission.settle("refused")
        return _form_page(request, form, chosen, errors=errors, minimum_age=minimum_age)
