"""The operator side: /ops (sign-in, dashboard, actions, audit trail, customer service) and /metrics."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.handlers import HTTPRouteHandler

from referral_broker.web.ops.access import EXCEPTION_HANDLERS, provide_operator, require_session
from referral_broker.web.ops.audit_trail import AuditPages
from referral_broker.web.ops.customer_service import CustomerServicePages, provide_reply_sender
from referral_broker.web.ops.dashboard import DashboardPages
from referral_broker.web.ops.legal_holds import LegalHoldPages
from referral_broker.web.ops.metrics import metrics
from referral_broker.web.ops.sign_in import SignInPages

#: Every /ops route passes the session guard; see `access` for the rules.
OPS_ROUTER = Router(
    path="/ops",
    route_handlers=[SignInPages, DashboardPages, AuditPages, LegalHoldPages, CustomerServicePages],
    guards=[require_session],
    dependencies={
        "operator": Provide(provide_operator, sync_to_thread=False),
        "reply_sender": Provide(provide_reply_sender, sync_to_thread=False),
    },
    exception_handlers=EXCEPTION_HANDLERS,
    include_in_schema=False,
)

OPS_ROUTES: list[Router | HTTPRouteHandler] = [OPS_ROUTER, metrics]
__all__ = ["OPS_ROUTES"]
