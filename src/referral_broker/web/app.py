"""The composition root of the HTTP service: one create_app() that wires everything."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, get
from litestar.openapi.config import OpenAPIConfig

from referral_broker.queue.doorbell import ArqDoorbell
from referral_broker.services.context import BrokerContext
from referral_broker.services.ports import Clock, Doorbell, system_clock
from referral_broker.services.settings import Settings
from referral_broker.web.clinic_api.inbox import ClinicInboxApi
from referral_broker.web.errors import EXCEPTION_HANDLERS
from referral_broker.web.health import healthz, readyz
from referral_broker.web.patient.api import PatientApi
from referral_broker.web.security_headers import add_security_headers


@get("/", media_type=MediaType.TEXT, include_in_schema=False)
async def home() -> str:
    return (
        "referral-broker\n\n"
        "Patient API: GET /api/v1/consent, GET /api/v1/clinics, POST /api/v1/referrals\n"
        "Clinic API (signed): GET /api/v1/clinic/inbox, POST /api/v1/clinic/inbox/ack\n"
        "API reference: /schema\n"
    )


def create_app(
    settings: Settings | None = None,
    *,
    doorbell_factory: Callable[[Settings], Doorbell] | None = None,
    clock: Clock = system_clock,
) -> Litestar:
    settings = settings or Settings.from_env()
    make_doorbell = doorbell_factory or (lambda s: ArqDoorbell(s.redis_url))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        doorbell = make_doorbell(settings)
        broker = await BrokerContext.open(settings, doorbell, clock=clock)
        app.state.broker = broker
        try:
            yield
        finally:
            await broker.close()
            close = getattr(doorbell, "close", None)
            if close is not None:
                await close()

    handlers: Any = EXCEPTION_HANDLERS
    return Litestar(
        route_handlers=[home, healthz, readyz, PatientApi, ClinicInboxApi],
        lifespan=[lifespan],
        exception_handlers=handlers,
        before_send=[add_security_headers],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="referral-broker", version="1"),
        debug=False,
    )
