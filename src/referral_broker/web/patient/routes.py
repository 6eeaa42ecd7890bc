"""What `create_app()` wires for patients: the pages (customer service too), the JSON API, `/robots.txt`, the
submission counter's lifetime."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Controller, Litestar
from litestar.handlers import HTTPRouteHandler

from referral_broker.adapters.configured import configured_sender
from referral_broker.adapters.redis_counter import RedisWindowCounter
from referral_broker.services.settings import Settings
from referral_broker.web.patient.api import PatientApi
from referral_broker.web.patient.contact_pages import ContactPages
from referral_broker.web.patient.error_pages import PAGE_EXCEPTION_HANDLERS
from referral_broker.web.patient.manage_pages import ManagePages
from referral_broker.web.patient.pages import PatientPages
from referral_broker.web.patient.privacy_page import PrivacyPage
from referral_broker.web.patient.rights_pages import RightsPages
from referral_broker.web.patient.robots import robots_txt

PATIENT_ROUTES: list[type[Controller] | HTTPRouteHandler] = [
    PatientPages,
    ManagePages,
    RightsPages,
    PrivacyPage,
    ContactPages,
    PatientApi,
    robots_txt,
]
__all__ = ["PAGE_EXCEPTION_HANDLERS", "PATIENT_ROUTES", "patient_lifespan"]


def patient_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Open the submission counter (Redis) with the app and close it after; make the one-time code sender."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        counter = RedisWindowCounter(settings.redis_url)
        app.state.submit_counter = counter
        app.state.code_sender = configured_sender(settings)
        try:
            yield
        finally:
            await counter.close()

    return lifespan
