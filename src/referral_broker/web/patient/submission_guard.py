"""The per-client submission limit as the form and the JSON API both apply it (one shared count)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from referral_broker.services import submit_limit
from referral_broker.services.context import BrokerContext
from referral_broker.services.submit_limit import WindowCounter
from referral_broker.web.patient.client_address import client_of


async def admit_submission(
    request: Request[Any, Any, Any], broker: BrokerContext, counter: WindowCounter
) -> submit_limit.Admission:
    """This submission's places in the client's counts; settle it with the outcome once that is known."""
    return await submit_limit.admit(broker, counter, client_of(request, broker.settings.trusted_proxies))
