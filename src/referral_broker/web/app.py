"""The composition root of the HTTP service: one create_app() that wires everything."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components

from referral_broker.adapters.arq_doorbell import ArqDoorbell
from referral_broker.services import inbox_waiting
from referral_broker.services.context import BrokerContext
from referral_broker.services.inbox_waiting import InboxWaiters, shutting_down
from referral_broker.services.ports import Clock, Doorbell, system_clock
from referral_broker.services.settings import Settings
from referral_broker.web.api_reference import render_plugins
from referral_broker.web.clinic_api import CLINIC_API, SECURITY_SCHEMES
from referral_broker.web.errors import EXCEPTION_HANDLERS
from referral_broker.web.head_requests import answer_head_as_get
from referral_broker.web.health import healthz, readyz
from referral_broker.web.ops import OPS_ROUTES
from referral_broker.web.pages import csrf_protection, static_files, template_config
from referral_broker.web.patient.routes import PAGE_EXCEPTION_HANDLERS, PATIENT_ROUTES, patient_lifespan
from referral_broker.web.protocol_schemas import protocol_schema
from referral_broker.web.readable_input import ReadableInput, ReadableRequest
from referral_broker.web.security_headers import add_security_headers
from referral_broker.web.slow_clients import SlowClientGuard
from referral_broker.web.state import APP_DEPENDENCIES


def create_app(
    settings: Settings,
    *,
    doorbell_factory: Callable[[Settings], Doorbell] | None = None,
    clock: Clock = system_clock,
) -> Litestar:
    make_doorbell = doorbell_factory or (lambda s: ArqDoorbell(s.redis_url))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncGenerator[None, None]:
        doorbell = make_doorbell(settings)
        broker = await BrokerContext.open(settings, doorbell, clock=clock)
        app.state.broker = broker
        waiters = app.state.inbox_waiters = InboxWaiters(settings.inbox_held_max)
        listener = app.state.inbox_listener = inbox_waiting.start_listening(broker, waiters)
        shutting_down.append(waiters.close)
        try:
            yield
        finally:
            waiters.close()  # any listing still held answers now (uvicorn calls it earlier: cli/http_server.py)
            shutting_down.remove(waiters.close)
            await listener.stop()
            await broker.close()
            close = getattr(doorbell, "close", None)
            if close is not None:
                await close()

    slow_clients = SlowClientGuard(settings.body_read_seconds)
    handlers: Any = {**EXCEPTION_HANDLERS, **PAGE_EXCEPTION_HANDLERS, **slow_clients.exception_handlers}
    app = Litestar(
        route_handlers=[healthz, readyz, *PATIENT_ROUTES, CLINIC_API, *OPS_ROUTES, protocol_schema, static_files()],
        lifespan=[lifespan, patient_lifespan(settings)],
        dependencies=APP_DEPENDENCIES,
        exception_handlers=handlers,
        before_send=[add_security_headers],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="referral-broker",
            version="1",
            render_plugins=render_plugins(),
            components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        ),
        template_config=template_config(),
        # Outermost first: a body's read time is bounded for everything inside; unreadable bytes are refused
        # before the CSRF check reads the form.
        middleware=[slow_clients.middleware, ReadableInput, csrf_protection(settings)],
        request_class=ReadableRequest,
        debug=False,
    )
    app.asgi_handler = answer_head_as_get(app.asgi_handler)
    return app
