"""Customer service for anyone: the contact form (`GET /kontakt`) and its receipt (the answer to `POST /kontakt`).

English and Nynorsk are the same path with `?lang=en` / `?lang=nn`, as every patient page. The form is
guarded as the referral form is: CSRF (the app's middleware), a honeypot refused openly, and a per-client
limit on messages stored, counted atomically in Redis (`REFERRAL_BROKER_CUSTOMER_SERVICE_RATE`); a form
with mistakes is not counted. A refusal for the limit shows the form again with what was typed. Nothing
typed is logged; it is stored only encrypted (`services/customer_service`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.response import Template

from referral_broker.services import customer_service
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter, admit_to
from referral_broker.web.i18n import Translator
from referral_broker.web.patient.client_address import client_of
from referral_broker.web.patient.page import language_of, render
from referral_broker.web.patient.referral_form import HONEYPOT_FIELD
from referral_protocol.errors import FieldError

CONTACT_PATH = "/kontakt"
#: The fields in the order the page shows them (and the error summary names them).
FIELDS = ("message", "reply_email", "about")


@dataclass(frozen=True)
class ContactForm:
    """The values as typed, shown again when something must be fixed."""

    message: str = ""
    reply_email: str = ""
    about: str = ""
    honeypot: str = ""

    @classmethod
    def from_form(cls, form: Any) -> ContactForm:
        def one(name: str) -> str:
            value = form.get(name)
            return value if isinstance(value, str) else ""

        return cls(one("message"), one("reply_email"), one("about"), one(HONEYPOT_FIELD))

    def shown(self) -> ContactForm:
        """As the page shows it again: a refused control character becomes a visible mark."""
        mark = customer_service.marked_controls
        return ContactForm(mark(self.message), mark(self.reply_email), mark(self.about))


def _messages(errors: list[FieldError], t: Translator) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in errors:
        if error.field not in found:
            key = f"contact.error.{error.field}.{error.code}"
            found[error.field] = t(key, max=customer_service.MAX_MESSAGE_CHARS) if t.has(key) else t("error.generic")
    return found


def _form_page(
    request: Request[Any, Any, Any],
    broker: BrokerContext,
    form: ContactForm,
    *,
    errors: list[FieldError] | None = None,
    status: int = 200,
    too_many: bool = False,
    headers: dict[str, str] | None = None,
) -> Template:
    t = Translator(language_of(request))
    return render(
        request,
        "patient/contact.html",
        status_code=status,
        headers=headers,
        switch_url=CONTACT_PATH if request.method == "GET" else None,
        form=form.shown(),
        errors=_messages(errors or [], t),
        field_order=FIELDS,
        too_many=too_many,
        max_chars=customer_service.MAX_MESSAGE_CHARS,
        retention_days=broker.settings.customer_service_retention_days,
        honeypot_field=HONEYPOT_FIELD,
    )


class ContactPages(Controller):
    path = CONTACT_PATH
    include_in_schema = False

    @get("/")
    async def contact(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Template:
        return _form_page(request, broker, ContactForm())

    @post("/")
    async def send(
        self,
        request: Request[Any, Any, Any],
        broker: NamedDependency[BrokerContext],
        submit_counter: NamedDependency[WindowCounter],
    ) -> Template:
        form = ContactForm.from_form(await request.form())
        if form.honeypot:
            # Refused openly like any bad request, and nothing is stored (decision 0122).
            return render(request, "patient/error.html", status_code=400, problem="refused")
        written, errors = customer_service.check_written(form.message, form.reply_email, form.about)
        if written is None:
            return _form_page(request, broker, form, errors=errors, status=422)
        # Only what would be stored is counted: a typo corrected does not use up the sender's messages.
        client = client_of(request, broker.settings.trusted_proxies)
        admission = await admit_to(
            broker, submit_counter, client, kind="contact-rate", rate=broker.settings.customer_service_rate
        )
        if not admission.admitted:
            wait = str(max(1, admission.retry_after_seconds))
            return _form_page(request, broker, form, status=429, too_many=True, headers={"retry-after": wait})
        reference = await customer_service.receive(broker, written, language=language_of(request))
        return render(
            request,
            "patient/contact_receipt.html",
            switch_url=None,
            reference=reference,
            can_reply=written.reply_to is not None,
            retention_days=broker.settings.customer_service_retention_days,
        )
