"""The signed clinic API under /api/v1/clinic: every route needs an RFC 9421 signature by an active key."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from referral_broker.web.clinic_api.api_document import SECURITY_SCHEMES, SIGNED
from referral_broker.web.clinic_api.clinic_self import ClinicSelfApi
from referral_broker.web.clinic_api.inbox import ClinicInboxApi, authenticated_clinic

#: What every clinic route needs beyond the app's dependencies: the clinic its signature names.
CLINIC_API = Router(
    path="/api/v1/clinic",
    route_handlers=[ClinicInboxApi, ClinicSelfApi],
    dependencies={"clinic": Provide(authenticated_clinic)},
    tags=["clinic"],
    security=SIGNED,
)
__all__ = ["CLINIC_API", "SECURITY_SCHEMES"]
