"""A small in-process broker for testing `referral-clinic`: it checks every request's signature and
serves envelopes sealed and signed the way the real broker does."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime

import httpx
import msgspec

from referral_protocol.consent import CONSENT_VERSION, consent_text_sha256
from referral_protocol.encoding import key_id
from referral_protocol.enrolment import (
    AckRequest,
    AckResult,
    ClinicStatusReport,
    InboxItem,
    InboxPage,
    KeyStatus,
    RefusalRequest,
    RefusalResult,
)
from referral_protocol.envelope import BrokerSigner, seal
from referral_protocol.referral import (
    REFERRAL_PAYLOAD_FORMAT,
    Need,
    Patient,
    ReferralPayload,
    SealedConsent,
)
from referral_protocol.request_signature import RequestSignatureInvalid, verify_request

CANARY_NAME = "Kari Canarysdatter"
CANARY_NEED = "CANARY-NEED-7731 vondt i kneet"


def referral_payload(clinic: str, *, reference: str | None = None, delivery_id: str | None = None) -> ReferralPayload:
    return ReferralPayload(
        format=REFERRAL_PAYLOAD_FORMAT,
        delivery_id=delivery_id or str(uuid.uuid4()),
        reference=reference or f"RB-{uuid.uuid4().hex[:5].upper()}-{uuid.uuid4().hex[:5].upper()}",
        clinic=clinic,
        submitted_at=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        patient=Patient(name=CANARY_NAME, email="kari@example.no", phone="+4741234567", birth_date=date(1990, 5, 17)),
        need=Need(description=CANARY_NEED, category="physiotherapy"),
        consent=SealedConsent(
            version=CONSENT_VERSION,
            accepted_at=datetime(2026, 11, 20, 9, 29, tzinfo=UTC),
            text_sha256=consent_text_sha256(),
        ),
    )


def sealed(
    payload: ReferralPayload,
    *,
    signer: BrokerSigner,
    recipient_keys: list[bytes],
    outer_clinic: str | None = None,
    kind: str = "referral",
) -> bytes:
    """Seal `payload` as the broker does; `outer_clinic` lets a test address the envelope differently."""
    return seal(
        msgspec.json.encode(payload),
        kind=kind,
        delivery_id=payload.delivery_id,
        reference=payload.reference,
        clinic=outer_clinic or payload.clinic,
        issued_at=datetime.now(UTC),
        recipient_keys=recipient_keys,
        signer=signer,
    ).data


@dataclass
class BrokerStandIn:
    """Answers the clinic API for one clinic; acknowledged deliveries leave the inbox, as at the broker."""

    clinic_signing_key: bytes
    inbox: dict[str, bytes] = field(default_factory=dict)
    acknowledged: list[str] = field(default_factory=list)
    ack_calls: list[list[str]] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    unsigned_or_bad: int = 0
    answer_status: int | None = None  # answer every signed request with this status
    ack_failures: list[int | Exception] = field(default_factory=list)  # consumed by the next ack calls
    always_more: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # delivery id -> reason the clinic reported
    key_states: dict[str, KeyStatus] = field(default_factory=dict)  # what `status` answers about keys
    key_requests: list[bytes] = field(default_factory=list)
    raw_page: bytes | None = None  # answer the inbox with these bytes, whatever they are
    reads_on: bool = True  # False: pages that name no `next` (no released broker serves such)
    _nonces: set[str] = field(default_factory=set)
    _order: dict[str, int] = field(default_factory=dict)  # delivery id -> its place, as the broker's cursor

    def add(self, delivery_id: str, envelope: bytes) -> None:
        self.inbox[delivery_id] = envelope
        self._order.setdefault(delivery_id, len(self._order) + 1)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._dated)

    def _dated(self, request: httpx.Request) -> httpx.Response:
        """Every answer says the broker's time, as uvicorn's do."""
        response = self.handle(request)
        response.headers["date"] = format_datetime(datetime.now(UTC), usegmt=True)
        return response

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            checked = verify_request(
                request.method,
                str(request.url),
                request.headers,
                request.content,
                public_key=self.clinic_signing_key,
            )
        except RequestSignatureInvalid:
            self.unsigned_or_bad += 1
            return httpx.Response(401)
        if checked.key_id != key_id(self.clinic_signing_key) or checked.nonce in self._nonces:
            self.unsigned_or_bad += 1
            return httpx.Response(401)
        self._nonces.add(checked.nonce)
        if self.answer_status is not None:
            return httpx.Response(self.answer_status)
        if request.method == "GET" and request.url.path == "/api/v1/clinic/inbox":
            return self._page(int(request.url.params["limit"]), request.url.params.get("after"))
        if request.method == "POST" and request.url.path == "/api/v1/clinic/inbox/ack":
            assert request.headers["content-type"] == "application/json"
            return self._ack(msgspec.json.decode(request.content, type=AckRequest))
        if request.method == "POST" and request.url.path == "/api/v1/clinic/inbox/refuse":
            return self._refuse(msgspec.json.decode(request.content, type=RefusalRequest))
        if request.method == "GET" and request.url.path == "/api/v1/clinic/status":
            return self._status()
        return httpx.Response(404)

    def _refuse(self, request: RefusalRequest) -> httpx.Response:
        known = []
        for r in request.refusals:
            if r.delivery_id in self.inbox or r.delivery_id in self.refused:
                self.inbox.pop(r.delivery_id, None)
                self.refused[r.delivery_id] = r.reason
                known.append(r.delivery_id)
        unknown = [r.delivery_id for r in request.refusals if r.delivery_id not in known]
        return httpx.Response(200, content=msgspec.json.encode(RefusalResult(refused=known, unknown=unknown)))

    def _status(self) -> httpx.Response:
        report = ClinicStatusReport(
            clinic="stand-in",
            status="active",
            keys=list(self.key_states.values()),
            waiting=len(self.inbox),
            oldest_waiting_at=None,
            undeliverable=len(self.refused),
            last_pull_at=None,
        )
        return httpx.Response(200, content=msgspec.json.encode(report))

    def _page(self, limit: int, after: str | None) -> httpx.Response:
        if self.raw_page is not None:
            return httpx.Response(200, content=self.raw_page, headers={"content-type": "application/json"})
        reading = after is not None and self.reads_on
        place = int(after.split(".")[1]) if reading and after not in (None, "start") else 0  # type: ignore[union-attr]
        for d in self.inbox:  # tests may put items straight into the inbox
            self._order.setdefault(d, len(self._order) + 1)
        waiting = [(d, e) for d, e in self.inbox.items() if self._order[d] > place]
        items = [InboxItem(delivery_id=d, envelope=e) for d, e in waiting[:limit]]
        more = self.always_more or len(waiting) > limit
        if not reading:
            return httpx.Response(200, content=msgspec.json.encode(InboxPage(items=items, more=more)))
        last = self._order[items[-1].delivery_id] if items else place
        following = f"r.{last}.{'0' * 32}" if more else None
        return httpx.Response(200, content=msgspec.json.encode(InboxPage(items=items, more=more, next=following)))

    def _ack(self, request: AckRequest) -> httpx.Response:
        self.ack_calls.append(list(request.delivery_ids))
        if self.ack_failures:
            failure = self.ack_failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure)
        known, unknown = [], []
        for delivery in request.delivery_ids:
            if delivery in self.inbox or delivery in self.acknowledged:
                self.inbox.pop(delivery, None)
                if delivery not in self.acknowledged:
                    self.acknowledged.append(delivery)
                known.append(delivery)
            else:
                unknown.append(delivery)
        return httpx.Response(200, content=msgspec.json.encode(AckResult(acknowledged=known, unknown=unknown)))
