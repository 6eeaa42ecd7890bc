"""The private manage link: `GET /manage/{token}` shows each clinic's state, `POST …/withdraw` withdraws consent.

An unknown token, a wrong one and one of the wrong shape all get the same 404 page as any unknown path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from referral_broker.domain.delivery import DeliveryStatus
from referral_broker.services import clinic_notices, manage
from referral_broker.services.context import BrokerContext
from referral_broker.services.manage import ManagedView, Withdrawal
from referral_broker.store.referrals import DeliveryView
from referral_broker.web.patient.page import render, switch_link
from referral_protocol.notice import NoticeKind

_S = DeliveryStatus
#: The states a patient is told about; queued and failed are both "waiting" to them.
_PATIENT_STATUS = {
    _S.QUEUED: "waiting",
    _S.FAILED: "waiting",
    _S.AVAILABLE: "available",
    _S.ACKNOWLEDGED: "acknowledged",
    _S.DEAD: "dead",
    _S.CANCELLED: "cancelled",
    _S.EXPIRED: "expired",
    _S.UNDELIVERABLE: "undeliverable",  # no key of the clinic can open it: the patient is asked to send again
}


@dataclass(frozen=True)
class ClinicState:
    clinic: str
    status: str  # a key under "status." in the catalogues
    at: datetime | None


def clinic_states(view: ManagedView) -> list[ClinicState]:
    referral = view.referral
    return [_state(d, referral.withdrawn_at, referral.anonymised_at) for d in view.deliveries]


def _state(d: DeliveryView, withdrawn_at: datetime | None, anonymised_at: datetime | None) -> ClinicState:
    status = _PATIENT_STATUS[DeliveryStatus(d.status)]
    at = {
        "available": d.dispatched_at,
        "acknowledged": d.acknowledged_at,
        "cancelled": withdrawn_at,
        "expired": anonymised_at,
    }.get(status, d.created_at)
    return ClinicState(clinic=d.clinic_name, status=status, at=at)


def not_found_page(request: Request[Any, Any, Any]) -> Template:
    """The one "not found" page, for unknown paths and unknown or wrong manage tokens alike."""
    switch_url = switch_link(request, keep=[])  # the same for every token
    return render(request, "patient/error.html", status_code=404, switch_url=switch_url, problem="not_found")


def _manage_page(
    request: Request[Any, Any, Any], token: str, view: ManagedView, withdrawal: Withdrawal | None = None
) -> Template:
    cancelled_now = set(withdrawal.cancelled) if withdrawal else set()
    reach = None  # who was told of the withdrawal: decided on the locked rows (0139); later, the same rule
    if withdrawal is not None:
        reach = withdrawal.reach
    elif view.referral.withdrawn_at is not None:
        reach = clinic_notices.reach(NoticeKind.WITHDRAWAL, view.deliveries)
    return render(
        request,
        "patient/manage.html",
        referral=view.referral,
        states=clinic_states(view),
        token=token,
        withdrawal=withdrawal,
        reach=reach,
        cancelled_now=[d.clinic_name for d in view.deliveries if d.id in cancelled_now],
        kept=[d.clinic_name for d in view.deliveries if d.status == DeliveryStatus.ACKNOWLEDGED.value],
        resubmit=[d.clinic_name for d in view.deliveries if d.status == DeliveryStatus.UNDELIVERABLE.value],
    )


class ManagePages(Controller):
    path = "/manage"
    include_in_schema = False

    @get("/{token:str}")
    async def show(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext], token: FromPath[str]
    ) -> Template:
        view = await manage.look_up(broker, token)
        return not_found_page(request) if view is None else _manage_page(request, token, view)

    @post("/{token:str}/withdraw", status_code=200)
    async def withdraw(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext], token: FromPath[str]
    ) -> Template:
        withdrawal = await manage.withdraw(broker, token)
        if withdrawal is None:
            return not_found_page(request)
        return _manage_page(request, token, withdrawal.view, withdrawal)
