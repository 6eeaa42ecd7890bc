"""The privacy statement (`/personvern`; English and Nynorsk by the language switch, as every patient page).

What it states that the code decides is read here from the running configuration and the code itself, so the
page cannot drift from what the service does: every retention period from `Settings`, the age limit, the
controller and processors from their settings (examples, marked as such, where a development configuration has
none; production refuses to start without them), and the cookies from the names the code sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.response import Template
from markupsafe import Markup, escape

from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.i18n import LANGUAGE_COOKIE, Translator
from referral_broker.web.ops.access import SESSION_COOKIE as OPS_SESSION_COOKIE
from referral_broker.web.pages import CSRF_COOKIE
from referral_broker.web.patient.page import language_of, render
from referral_broker.web.patient.rights_access import SESSION_COOKIE as RIGHTS_SESSION_COOKIE

PATH = "/personvern"
#: The statement's version and date: change both when its wording changes (not when a setting does).
VERSION = "1.0"
DATED = date(2026, 12, 7)

#: Every cookie the service sets, by the code's own names, with the key of its purpose and lifetime texts.
COOKIES: tuple[tuple[str, str], ...] = (
    (CSRF_COOKIE, "csrf"),
    (LANGUAGE_COOKIE, "language"),
    (RIGHTS_SESSION_COOKIE, "rights"),
    (OPS_SESSION_COOKIE, "ops"),
)


@dataclass(frozen=True)
class ControllerDetails:
    name: str
    org_number: str
    address: str
    email: str
    example: bool  # some of it is the development configuration's example


def controller_of(settings: Settings, t: Translator) -> ControllerDetails:
    s = settings
    return ControllerDetails(
        name=s.controller_name or t("privacy.example_name"),
        org_number=s.controller_org_number or "999 999 999",
        address=s.controller_address or t("privacy.example_address"),
        email=s.controller_email or "personvern@example.no",
        example=bool(s.missing_controller_details()),
    )


def _setting(settings: Settings, name: str) -> Markup:
    """A configured number, marked with the setting it comes from (the test reads the marks back)."""
    return Markup('<span data-setting="{}">{}</span>').format(name, escape(str(getattr(settings, name))))


class PrivacyPage(Controller):
    path = PATH
    include_in_schema = False

    @get("/")
    async def privacy(self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext]) -> Template:
        s = broker.settings
        t = Translator(language_of(request))
        periods = {
            name: _setting(s, name)
            for name in (
                "retention_months",
                "rights_code_minutes",
                "rights_session_minutes",
                "customer_service_retention_days",
                "log_retention_days",
                "minimum_age",
            )
        }
        return render(
            request,
            "patient/privacy.html",
            controller=controller_of(s, t),
            processors=s.processors,
            period=periods,
            number={name: getattr(s, name) for name in periods},  # for the plural forms
            cookies=COOKIES,
            version=VERSION,
            dated=t.day(DATED),
        )
