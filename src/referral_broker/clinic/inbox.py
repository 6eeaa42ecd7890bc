"""Pulling the inbox: open and check each envelope, write it durably, record it, then acknowledge.

The order is the promise: a delivery is acknowledged only after its referral (or notice) is on disk
and the ledger says so. What fails a check is neither written nor acknowledged. Failures that no
machine of this clinic could ever get past (a bad signature, another addressee, a box that does not
open, a malformed or mismatched payload) are reported to the broker, which takes the delivery out of
the inbox as undeliverable and shows it to its operators: otherwise a full page of them would stall
every pull for ever (the "stalled pull"). What another of the clinic's machines may open, or a newer
version of this tool may read, is skipped and left waiting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from nacl.public import PrivateKey

from referral_broker.clinic import durable, notice_file, referral_file
from referral_broker.clinic.broker_client import BrokerClient, BrokerRefusedClinic, BrokerUnavailable
from referral_broker.clinic.ledger import Ledger
from referral_broker.clinic.notice_file import ReceivedNotice
from referral_broker.clinic.referral_file import ReceivedReferral
from referral_broker.crypto.encoding import key_id
from referral_broker.crypto.envelope import EnvelopeBody, SignedEnvelope, open_envelope, verify
from referral_broker.domain.enrolment import InboxItem, Refusal, RefusalReason
from referral_broker.domain.errors import EnvelopeRejected
from referral_broker.domain.notice import NOTICE_KINDS, NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_broker.domain.referral import REFERRAL_PAYLOAD_FORMAT, ReferralPayload
from referral_broker.domain.validation import DECODE_ERRORS

DEFAULT_LIMIT = 100

_payload_decoder = msgspec.json.Decoder(ReferralPayload)
_notice_decoder = msgspec.json.Decoder(NoticePayload)
_outer_decoder = msgspec.json.Decoder(SignedEnvelope)
_AT_PATH = re.compile(r"at `(\$[^`]*)`")


class Refused(Exception):
    """An envelope failed a check; the message says which, and never shows its content.

    `report_as` is set when no machine of this clinic could ever open it correctly: the broker is
    told, and the delivery leaves the inbox. Without it the envelope is skipped and left waiting.
    """

    def __init__(self, message: str, report_as: RefusalReason | None = None) -> None:
        super().__init__(message)
        self.report_as: RefusalReason | None = report_as


@dataclass(frozen=True)
class ClinicKeys:
    """What opening an envelope needs: who we are, whom we trust, and our private encryption keys."""

    slug: str
    broker_key: bytes
    private_keys: list[bytes]

    @property
    def key_ids(self) -> set[str]:
        return {key_id(bytes(PrivateKey(k).public_key)) for k in self.private_keys}


@dataclass
class PullReport:
    pulled: int = 0
    written: int = 0
    notices: int = 0
    acknowledged: int = 0
    already_had: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # delivery id -> reason
    reported: list[str] = field(default_factory=list)  # refusals the broker took out of the inbox
    local_failures: dict[str, str] = field(default_factory=dict)  # this machine's: disk full, permissions
    not_acknowledged: dict[str, str] = field(default_factory=dict)
    broker_error: BrokerUnavailable | BrokerRefusedClinic | None = None
    stalled: bool = False  # a full page held nothing this machine could take; more waits behind it
    stopped: bool = False  # asked to stop (a signal) before the inbox was empty
    references: list[str] = field(default_factory=list)  # referrals written, or given a notice, in this run

    @property
    def complete(self) -> bool:
        return not (self.refused or self.local_failures or self.not_acknowledged or self.broker_error or self.stalled)

    def summary(self) -> str:
        return (
            f"pulled {self.pulled}, written {self.written}, acknowledged {self.acknowledged}, "
            f"already had {self.already_had}, refused {len(self.refused)}"
            + (f", notices {self.notices}" if self.notices else "")
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "pulled": self.pulled,
            "written": self.written,
            "notices": self.notices,
            "acknowledged": self.acknowledged,
            "already_had": self.already_had,
            "refused": self.refused,
            "reported_to_broker": self.reported,
            "local_failures": self.local_failures,
            "not_acknowledged": self.not_acknowledged,
            "broker_error": None if self.broker_error is None else str(self.broker_error),
            "stalled": self.stalled,
            "stopped": self.stopped,
            "complete": self.complete,
            "references": self.references,
        }


def _open(item: InboxItem, keys: ClinicKeys) -> tuple[EnvelopeBody, bytes]:
    """Verify and unseal, telling apart what is wrong with the envelope from what this machine lacks."""
    try:
        signer = _outer_decoder.decode(item.envelope).signer
    except DECODE_ERRORS:
        raise Refused("envelope is malformed", "bad_signature") from None
    if signer != key_id(keys.broker_key):
        # Our pinned key, not the envelope, may be what is out of date: never report this one.
        raise Refused(
            "envelope is signed by a key other than the pinned broker key; if the broker's operator "
            "announced a new broker key, pin it (config.json) and pull again"
        )
    try:
        body = verify(item.envelope, keys.broker_key)
    except EnvelopeRejected as exc:
        raise Refused(str(exc), "bad_signature") from None
    if body.clinic != keys.slug:
        raise Refused(f"envelope is addressed to {body.clinic!r}, not to this clinic", "wrong_addressee")
    if not keys.key_ids & {r.key_id for r in body.recipients}:
        raise Refused(
            "envelope is not sealed to any key this machine holds (another machine of the clinic may hold one); "
            "left waiting"
        )
    try:
        _, plaintext = open_envelope(
            item.envelope, broker_key=keys.broker_key, clinic=keys.slug, private_keys=keys.private_keys
        )
    except EnvelopeRejected as exc:
        raise Refused(str(exc), "does_not_open") from None
    if body.delivery_id != item.delivery_id:
        raise Refused("envelope was served under another delivery's id", "wrong_delivery")
    return body, plaintext


def _where(exc: Exception) -> str:
    where = _AT_PATH.search(str(exc))  # only the field's path: msgspec may quote values
    return f" (at {where.group(1)})" if where else ""


def open_referral(item: InboxItem, keys: ClinicKeys) -> ReferralPayload:
    """Verify the broker's signature, unseal, and check the referral inside is for this delivery to us."""
    opened = open_item(item, keys)
    if not isinstance(opened, ReferralPayload):
        raise Refused(f"envelope holds a {opened.kind!r} notice, not a referral")
    return opened


def open_item(item: InboxItem, keys: ClinicKeys) -> ReferralPayload | NoticePayload:
    """Open a referral or a notice and check everything it says about itself."""
    body, plaintext = _open(item, keys)
    if body.kind == "referral":
        return _check_referral(body, plaintext, keys)
    if body.kind in NOTICE_KINDS:
        return _check_notice(body, plaintext, keys)
    raise Refused(f"envelope holds a {body.kind!r}, which this version of referral-clinic cannot read; upgrade it")


def _check_referral(body: EnvelopeBody, plaintext: bytes, keys: ClinicKeys) -> ReferralPayload:
    try:
        payload = _payload_decoder.decode(plaintext)
    except DECODE_ERRORS as exc:
        raise Refused(
            "the sealed referral is not a valid referral document" + _where(exc), "malformed_payload"
        ) from None
    if payload.format != REFERRAL_PAYLOAD_FORMAT:
        raise Refused(f"the sealed referral has unknown format {payload.format!r}; upgrade referral-clinic")
    if payload.clinic != keys.slug:
        raise Refused(f"the sealed referral is for clinic {payload.clinic!r}, re-sealed to this clinic", "wrong_clinic")
    if payload.delivery_id != body.delivery_id or payload.reference != body.reference:
        raise Refused("the sealed referral belongs to another delivery than its envelope", "wrong_delivery")
    if not referral_file.is_file_safe(payload.reference):
        raise Refused("the referral's reference cannot be used as a file name", "malformed_payload")
    return payload


def _check_notice(body: EnvelopeBody, plaintext: bytes, keys: ClinicKeys) -> NoticePayload:
    try:
        notice = _notice_decoder.decode(plaintext)
    except DECODE_ERRORS as exc:
        raise Refused("the sealed notice is not a valid notice" + _where(exc), "malformed_payload") from None
    if notice.format != NOTICE_PAYLOAD_FORMAT:
        raise Refused(f"the sealed notice has unknown format {notice.format!r}; upgrade referral-clinic")
    if notice.kind != body.kind:
        raise Refused("the sealed notice is of another kind than its envelope", "malformed_payload")
    if notice.clinic != keys.slug:
        raise Refused(f"the sealed notice is for clinic {notice.clinic!r}, re-sealed to this clinic", "wrong_clinic")
    if notice.notice_id != body.delivery_id or notice.reference != body.reference:
        raise Refused("the sealed notice belongs to another delivery than its envelope", "wrong_delivery")
    if not (referral_file.is_file_safe(notice.reference) and referral_file.is_file_safe(notice.notice_id)):
        raise Refused("the notice's reference or id cannot be used as a file name", "malformed_payload")
    if notice.kind == NoticeKind.CORRECTION and notice.patient is None:
        raise Refused("the correction notice carries no corrected details", "malformed_payload")
    return notice


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
        should_stop: Callable[[], bool] = lambda: False,
        on_item: Callable[[PullReport], None] = lambda report: None,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._outdir = outdir.resolve()
        self._keys = keys
        self._clock = clock
        self._should_stop = should_stop
        self._on_item = on_item

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
            to_refuse: list[Refusal] = []
            for item in page.items:
                if self._should_stop():
                    report.stopped = True  # what is written is acknowledged below; the rest waits at the broker
                    break
                if item.delivery_id in seen:
                    continue  # served again in this run: its outcome is already counted
                seen.add(item.delivery_id)
                report.pulled += 1
                try:
                    self._receive(item, report)
                except Refused as exc:
                    report.refused[item.delivery_id] = str(exc)
                    if exc.report_as is not None:
                        to_refuse.append(Refusal(delivery_id=item.delivery_id, reason=exc.report_as))
                    continue
                except OSError as exc:
                    # The disk, not the envelope: stop, and acknowledge only what is already safely written.
                    report.local_failures[item.delivery_id] = f"cannot write: {exc.strerror or exc}"
                    self._acknowledge(to_ack, report)
                    return report
                finally:
                    self._on_item(report)
                to_ack.append(item.delivery_id)
            progressed = self._acknowledge(to_ack, report)
            progressed = self._report_refusals(to_refuse, report) or progressed
            if report.broker_error or report.stopped or not page.more:
                return report
            if not progressed:
                report.stalled = True
                return report

    def _receive(self, item: InboxItem, report: PullReport) -> None:
        """Make sure the item is on disk and in the ledger; the caller then acknowledges it."""
        opened = open_item(item, self._keys)
        if isinstance(opened, NoticePayload):
            self._receive_notice(opened, report)
            return
        payload = opened
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
                self._ledger.record_written(delivery, reference, target, sync=False)
                report.already_had += 1
                return
            raise Refused(f"{target} exists but the ledger has no record of writing it; refusing to overwrite")
        self._ledger.record_writing(delivery, reference, target)
        referral_file.write(
            target, ReceivedReferral.from_payload(payload, received_at=self._clock()), sync_folder=False
        )
        self._ledger.record_written(delivery, reference, target, sync=False)
        report.written += 1
        report.references.append(reference)

    def _receive_notice(self, notice: NoticePayload, report: PullReport) -> None:
        """File the notice beside its referral, under its own id, with the same crash-safe steps."""
        known = self._ledger.written_reference(notice.notice_id)
        if known is not None or self._ledger.is_acknowledged(notice.notice_id):
            if known not in (None, notice.reference):
                raise Refused(f"the ledger has this notice under another reference ({known})")
            report.already_had += 1
            return
        target = notice_file.path_for(self._outdir, notice.reference, notice.kind, notice.notice_id)
        if target.exists():
            if self._ledger.was_writing(notice.notice_id, target):
                self._ledger.record_written(notice.notice_id, notice.reference, target, notice=notice.kind, sync=False)
                report.already_had += 1
                return
            raise Refused(f"{target} exists but the ledger has no record of writing it; refusing to overwrite")
        self._ledger.record_writing(notice.notice_id, notice.reference, target, notice=notice.kind)
        notice_file.write(target, ReceivedNotice.from_payload(notice, received_at=self._clock()), sync_folder=False)
        self._ledger.record_written(notice.notice_id, notice.reference, target, notice=notice.kind, sync=False)
        report.notices += 1
        if notice.reference not in report.references:
            report.references.append(notice.reference)

    def _report_refusals(self, refusals: list[Refusal], report: PullReport) -> bool:
        """Tell the broker what can never be opened here; True when it took at least one out of the inbox."""
        if not refusals:
            return False
        try:
            result = self._client.refuse(refusals)
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            report.broker_error = exc
            return False
        report.reported.extend(result.refused)
        return bool(result.refused)

    def _acknowledge(self, delivery_ids: list[str], report: PullReport) -> bool:
        """Acknowledge one batch; True when the broker confirmed at least one of them.

        First the batch is made durable as a whole: each file's data was fsync'd when it was written,
        and here the folder (the new names) and the ledger's "written" lines are, once for the page
        instead of once per referral. Only then does the broker hear of it."""
        if not delivery_ids:
            return False
        try:
            durable.fsync_dir(self._outdir)
            self._ledger.sync()
        except OSError as exc:
            for delivery in delivery_ids:
                report.local_failures[delivery] = f"written, but not yet safely on disk: {exc.strerror or exc}"
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
