"""Pulling the inbox: open and check each envelope, write the referral durably, record it, then acknowledge.

The order is the promise: a delivery is acknowledged only after its referral is on disk and the
ledger says so. Whatever fails a check is neither written nor acknowledged, so the broker keeps it
and an operator sees it waiting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from referral_broker.clinic import durable, referral_file
from referral_broker.clinic.broker_client import BrokerClient, BrokerRefusedClinic, BrokerUnavailable
from referral_broker.clinic.ledger import Ledger
from referral_broker.clinic.referral_file import ReceivedReferral
from referral_broker.crypto.envelope import open_envelope
from referral_broker.domain.enrolment import InboxItem
from referral_broker.domain.errors import EnvelopeRejected
from referral_broker.domain.referral import REFERRAL_PAYLOAD_FORMAT, ReferralPayload

DEFAULT_LIMIT = 100

_payload_decoder = msgspec.json.Decoder(ReferralPayload)
_AT_PATH = re.compile(r"at `(\$[^`]*)`")


class Refused(Exception):
    """An envelope failed a check; the message says which, and never shows its content."""


@dataclass(frozen=True)
class ClinicKeys:
    """What opening an envelope needs: who we are, whom we trust, and our private encryption keys."""

    slug: str
    broker_key: bytes
    private_keys: list[bytes]


@dataclass
class PullReport:
    pulled: int = 0
    written: int = 0
    acknowledged: int = 0
    already_had: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # delivery id -> reason
    local_failures: dict[str, str] = field(default_factory=dict)  # this machine's: disk full, permissions
    not_acknowledged: dict[str, str] = field(default_factory=dict)
    broker_error: BrokerUnavailable | BrokerRefusedClinic | None = None

    @property
    def complete(self) -> bool:
        return not (self.refused or self.local_failures or self.not_acknowledged or self.broker_error)

    def summary(self) -> str:
        return (
            f"pulled {self.pulled}, written {self.written}, acknowledged {self.acknowledged}, "
            f"already had {self.already_had}, refused {len(self.refused)}"
        )


def open_referral(item: InboxItem, keys: ClinicKeys) -> ReferralPayload:
    """Verify the broker's signature, unseal, and check the referral inside is for this delivery to us."""
    try:
        body, plaintext = open_envelope(
            item.envelope, broker_key=keys.broker_key, clinic=keys.slug, private_keys=keys.private_keys
        )
    except EnvelopeRejected as exc:
        raise Refused(str(exc)) from None
    if body.kind != "referral":
        raise Refused(f"envelope holds a {body.kind!r}, which this version of referral-clinic cannot read")
    if body.delivery_id != item.delivery_id:
        raise Refused("envelope was served under another delivery's id")
    try:
        payload = _payload_decoder.decode(plaintext)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        where = _AT_PATH.search(str(exc))  # only the field's path: msgspec may quote values
        raise Refused(
            "the sealed referral is not a valid referral document" + (f" (at {where.group(1)})" if where else "")
        ) from None
    if payload.format != REFERRAL_PAYLOAD_FORMAT:
        raise Refused(f"the sealed referral has unknown format {payload.format!r}")
    if payload.clinic != keys.slug:
        raise Refused(f"the sealed referral is for clinic {payload.clinic!r}, re-sealed to this clinic")
    if payload.delivery_id != body.delivery_id or payload.reference != body.reference:
        raise Refused("the sealed referral belongs to another delivery than its envelope")
    if not referral_file.is_file_safe(payload.reference):
        raise Refused("the referral's reference cannot be used as a file name")
    return payload


class Inbox:
    """One pull run over the clinic's inbox; call `pull` while holding the clinic folder's lock."""

    def __init__(
        self,
        client: BrokerClient,
        ledger: Ledger,
        outdir: Path,
        keys: ClinicKeys,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._outdir = outdir.resolve()
        self._keys = keys
        self._clock = clock

    def pull(self, limit: int = DEFAULT_LIMIT) -> PullReport:
        report = PullReport()
        durable.remove_stale_temp_files(self._outdir)
        seen: set[str] = set()
        while True:
            try:
                page = self._client.fetch_inbox(limit)
            except (BrokerUnavailable, BrokerRefusedClinic) as exc:
                report.broker_error = exc
                return report
            to_ack: list[str] = []
            for item in page.items:
                if item.delivery_id in seen:
                    continue  # served again in this run: its outcome is already counted
                seen.add(item.delivery_id)
                report.pulled += 1
                try:
                    self._receive(item, report)
                except Refused as exc:
                    report.refused[item.delivery_id] = str(exc)
                    continue
                except OSError as exc:
                    # The disk, not the envelope: stop, and acknowledge only what is already safely written.
                    report.local_failures[item.delivery_id] = f"cannot write the referral: {exc.strerror or exc}"
                    self._acknowledge(to_ack, report)
                    return report
                to_ack.append(item.delivery_id)
            progressed = self._acknowledge(to_ack, report)
            if report.broker_error or not page.more or not progressed:
                return report

    def _receive(self, item: InboxItem, report: PullReport) -> None:
        """Make sure the referral is on disk and in the ledger; the caller then acknowledges it."""
        payload = open_referral(item, self._keys)
        delivery, reference = payload.delivery_id, payload.reference
        known = self._ledger.written_reference(delivery)
        if known is not None or self._ledger.is_acknowledged(delivery):
            if known not in (None, reference):
                raise Refused(f"the ledger has this delivery under another reference ({known})")
            report.already_had += 1  # a replay, or a crash between writing and acknowledging
            return
        if self._ledger.delivery_of(reference) is not None:
            raise Refused(f"reference {reference} was already written for another delivery")
        target = referral_file.path_for(self._outdir, reference)
        if target.exists():
            if self._ledger.was_writing(delivery, target):  # we renamed it into place, then crashed
                self._ledger.record_written(delivery, reference, target)
                report.already_had += 1
                return
            raise Refused(f"{target} exists but the ledger has no record of writing it; refusing to overwrite")
        self._ledger.record_writing(delivery, reference, target)
        referral_file.write(target, ReceivedReferral.from_payload(payload, received_at=self._clock()))
        self._ledger.record_written(delivery, reference, target)
        report.written += 1

    def _acknowledge(self, delivery_ids: list[str], report: PullReport) -> bool:
        """Acknowledge one batch; True when the broker confirmed at least one of them."""
        if not delivery_ids:
            return False
        try:
            result = self._client.acknowledge(delivery_ids)
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            report.broker_error = exc
            for delivery in delivery_ids:
                report.not_acknowledged[delivery] = "written, but the acknowledgement did not go through"
            return False
        confirmed_by_broker = set(result.acknowledged)
        unknown = set(result.unknown)
        confirmed = [d for d in delivery_ids if d in confirmed_by_broker]
        try:
            self._ledger.record_acknowledged(confirmed)
        except OSError as exc:
            # Harmless for the referrals (they are written and the broker has them as acknowledged),
            # but the clinic should know its ledger is not being kept.
            for delivery in confirmed:
                report.local_failures[delivery] = f"acknowledged, but the ledger could not record it: {exc.strerror}"
        report.acknowledged += len(confirmed)
        for delivery in delivery_ids:
            if delivery in unknown:
                report.not_acknowledged[delivery] = "written, but the broker does not know this delivery"
            elif delivery not in confirmed_by_broker:
                report.not_acknowledged[delivery] = "written, but the broker did not confirm it"
        return bool(confirmed)
