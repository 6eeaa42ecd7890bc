"""The private manage link: `GET /manage/{token}` shows each clinic's state; `POST …/withdraw` asks to confirm
(the same step, and the same words, as withdrawing from `/rights`), `POST …/withdraw/confirm` withdraws consent.

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

from referral_broker.domain.delivery import DeliveryStatus, sources_of
from referral_broker.services import clinic_notices, manage
from referral_broker.services.context import BrokerContext
from referral_broker.services.manage import ManagedView, Withdrawal
from referral_broker.store.referrals import DeliveryView
from referral_broker.web.i18n import Translator
from referral_broker.web.patient.page import language_of, render, switch_link
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


def patient_status(status: str) -> str:
    """A delivery state as the patient is told it: a key under "status." in the catalogues."""
    return _PATIENT_STATUS[DeliveryStatus(status)]


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


def told_names(deliveries: list[DeliveryView], kind: NoticeKind) -> list[str]:
    """The clinics a notice of this kind goes to, by name, as the service decides it (the one place pages ask)."""
    return [d.clinic_name for d in deliveries if clinic_notices.told_about(kind, d)]


def not_told_names(deliveries: list[DeliveryView], kind: NoticeKind) -> list[str]:
    """The clinics a withdrawal or erasure notice does not go to: they never received the referral (0139)."""
    return clinic_notices.reach(kind, deliveries).not_told


def stoppable_names(deliveries: list[DeliveryView]) -> list[str]:
    """The clinics whose copy a withdrawal or erasure would stop before they receive it."""
    sources = set(sources_of(DeliveryStatus.CANCELLED))
    return [d.clinic_name for d in deliveries if d.status in sources]


@dataclass(frozen=True)
class WithdrawnNow:
    """What a withdrawal from this page just did, in the words the rights pages use for the same act."""

    stopped: list[str]
    told: list[str]
    not_told: list[str]


def not_found_page(request: Request[Any, Any, Any]) -> Template:
    """The one "not found" page, for unknown paths and unknown or wrong manage tokens alike."""
    switch_url = switch_link(request, keep=[])  # the same for every token
    return render(request, "patient/error.html", status_code=404, switch_url=switch_url, problem="not_found")


async def _gone(request: Request[Any, Any, Any], broker: BrokerContext, token: str) -> Template:
    """An erased referral's link says so, and the day (410); any other unknown link is the one 404 page."""
    erased = await manage.erased_on(broker, token)
    if erased is None:
        return not_found_page(request)
    day = Translator(language_of(request)).day(erased)
    return render(request, "patient/erased.html", status_code=410, switch_url=switch_link(request, keep=[]), day=day)


def _manage_page(
    request: Request[Any, Any, Any], token: str, view: ManagedView, withdrawal: WithdrawnNow | None = None
) -> Template:
    return render(
        request,
        "patient/manage.html",
        referral=view.referral,
        states=clinic_states(view),
        token=token,
        withdrawal=withdrawal,
        stoppable=stoppable_names(view.deliveries),
        told=told_names(view.deliveries, NoticeKind.WITHDRAWAL),
        not_told=not_told_names(view.deliveries, NoticeKind.WITHDRAWAL) if view.referral.withdrawn_at else [],
        resubmit=[d.clinic_name for d in view.deliveries if d.status == DeliveryStatus.UNDELIVERABLE.value],
    )


def _confirm_page(request: Request[Any, Any, Any], token: str, view: ManagedView) -> Template:
    """The confirm step before withdrawing: what stops, who is told, that it cannot be undone."""
    return render(
        request,
        "patient/rights_confirm.html",
        switch_url=None,  # an answer to a POST
        action="withdraw",
        reference=view.referral.reference,
        submitted=Translator(language_of(request)).day(view.referral.created_at),
        clinics=[d.clinic_name for d in view.deliveries],
        stopped=stoppable_names(view.deliveries),
        told=told_names(view.deliveries, NoticeKind.WITHDRAWAL),
        not_told=not_told_names(view.deliveries, NoticeKind.WITHDRAWAL),
        confirm_url=f"/manage/{token}/withdraw/confirm",
        cancel_url=f"/manage/{token}",
    )


class ManagePages(Controller):
    path = "/manage"
    include_in_schema = False

    @get("/{token:str}")
    async def show(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext], token: FromPath[str]
    ) -> Template:
        view = await manage.look_up(broker, token)
        return await _gone(request, broker, token) if view is None else _manage_page(request, token, view)

    @post("/{token:str}/withdraw", status_code=200)
    async def confirm_withdrawal(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext], token: FromPath[str]
    ) -> Template:
        view = await manage.look_up(broker, token)
        if view is None:
            return await _gone(request, broker, token)
        if view.referral.withdrawn_at is not None:
            return _manage_page(request, token, view)
        return _confirm_page(request, token, view)

    @post("/{token:str}/withdraw/confirm", status_code=200)
    async def withdraw(
        self, request: Request[Any, Any, Any], broker: NamedDependency[BrokerContext], token: FromPath[str]
    ) -> Template:
        before = await manage.look_up(broker, token)
        if before is None:
            return await _gone(request, broker, token)
        withdrawal = await manage.withdraw(broker, token)
        if withdrawal is None:  # pragma: no cover - found a moment ago, and a referral's token never changes
            return not_found_page(request)
        return _manage_page(request, token, withdrawal.view, _withdrawn_now(withdrawal))


def _withdrawn_now(withdrawal: Withdrawal) -> WithdrawnNow:
    """Who was told is what the service decided on the locked rows (0139), not what the page saw before."""
    cancelled = set(withdrawal.cancelled)
    reach = withdrawal.reach if withdrawal.first_time else clinic_notices.Reach()
    return WithdrawnNow(
        stopped=[d.clinic_name for d in withdrawal.view.deliveries if d.id in cancelled],
        told=reach.told,
        not_told=reach.not_told,
    )
