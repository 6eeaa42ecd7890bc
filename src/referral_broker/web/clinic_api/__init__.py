"""The signed clinic API under /api/v1/clinic: every route needs an RFC 9421 signature by an active key."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from referral_broker.web.clinic_api.clinic_self import ClinicSelfApi
from referral_broker.web.clinic_api.inbox import ClinicInboxApi, authenticated_clinic
from referral_broker.web.state import provide_broker

#: One place for what every clinic route needs: the broker and the clinic its signature names.
CLINIC_API = Router(
    path="/api/v1/clinic",
    route_handlers=[ClinicInboxApi, ClinicSelfApi],
    dependencies={
        "broker": Provide(provide_broker, sync_to_thread=False),
        "clinic": Provide(authenticated_clinic),
    },
    tags=["clinic"],
)
__all__ = ["CLINIC_API"]
