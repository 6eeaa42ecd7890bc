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

import functools
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import msgspec

from referral_clinic import durable, notice_file, referral_file
from referral_clinic.broker_client import BrokerClient, BrokerRefusedClinic, BrokerUnavailable
from referral_clinic.ledger import FileRecord, Ledger
from referral_clinic.notice_file import ReceivedNotice
from referral_clinic.openers import Openers, Opening
from referral_clinic.referral_file import ReceivedReferral
from referral_protocol.enrolment import (
    INBOX_START,
    AckResult,
    InboxItem,
    InboxPage,
    Refusal,
    RefusalReason,
    RefusalResult,
)
from referral_protocol.envelope import EnvelopeBody, OpeningKeys, verify
from referral_protocol.errors import EnvelopeRejected, EnvelopeSignedByAnotherKey
from referral_protocol.notice import NOTICE_KINDS, NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_protocol.referral import REFERRAL_PAYLOAD_FORMAT, ReferralPayload
from referral_protocol.validation import DECODE_ERRORS

DEFAULT_LIMIT = 100

_payload_decoder = msgspec.json.Decoder(ReferralPayload)
_notice_decoder = msgspec.json.Decoder(NoticePayload)
_AT_PATH = re.compile(r"at `(\$[^`]*)`")


class Refused(Exception):
    """An envelope failed a check; the message says which, and never shows its content.

    `report_as` is set when no machine of this clinic could ever open it correctly: the broker is
    told, and the delivery leaves the inbox. Without it the envelope is skipped and left waiting.
    """

    def __init__(self, message: str, report_as: RefusalReason | None = None) -> None:
        super().__init__(message)
        self.report_as: RefusalReason | None = report_as

    def __reduce__(self) -> tuple[type[Refused], tuple[str, RefusalReason | None]]:
        return Refused, (str(self), self.report_as)  # from the opening process, with its reason


@dataclass(frozen=True)
class ClinicKeys:
    """What opening an envelope needs: who we are, whom we trust, and our private encryption keys."""

    slug: str
    broker_key: bytes
    private_keys: list[bytes]

    @cached_property
    def opening(self) -> OpeningKeys:
        return OpeningKeys(self.private_keys)

    @property
    def key_ids(self) -> frozenset[str]:
        return self.opening.key_ids


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
    # referrals written, or given a notice, in this run, in that order (a dict: each once, found at once)
    references: dict[str, None] = field(default_factory=dict)

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
            "references": list(self.references),
        }


def _open(item: InboxItem, keys: ClinicKeys) -> tuple[EnvelopeBody, bytes]:
    """Verify and unseal, telling apart what is wrong with the envelope from what this machine lacks."""
    try:
        body = verify(item.envelope, keys.broker_key)
    except EnvelopeSignedByAnotherKey:
        # Our pinned key, not the envelope, may be what is out of date: never report this one.
        raise Refused(
            "envelope is signed by a key other than the pinned broker key; if the broker's operator "
            "announced a new broker key, pin it (config.json) and pull again"
        ) from None
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
        plaintext = keys.opening.unseal(body)
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


Opened = ReferralPayload | NoticePayload | Refused  # what opening one envelope gives


def open_or_refusal(keys: ClinicKeys, item: InboxItem) -> Opened:
    """`open_item`, with a refusal given back instead of raised (what `openers.Openers` wants)."""
    try:
        return open_item(item, keys)
    except Refused as exc:
        return exc


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


@dataclass(frozen=True)
class _Filing:
    """One item of a page on its way to disk: its ledger record, and its bytes (None: a file an interrupted
    pull already renamed into place, recognised by its "writing" line)."""

    record: FileRecord
    data: bytes | None
    counts_as: str  # "referral" or "notice"


class Inbox:
    """One pull run over the clinic's inbox; call `pull` while holding the clinic folder's lock.

    A page is filed as a whole, in the order that lets a crash at any point lose nothing and
    duplicate nothing: the page's "writing" lines reach the disk, then its files are written under
    temporary names and made durable together, renamed into place, the folder is made durable,
    the "written" lines are recorded and made durable, and only then is the page acknowledged.
    That is four waits for the disk a page, instead of several a referral."""

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
        """Read the inbox page by page: while one page is opened and filed, the next is fetched and the one
        before is acknowledged, by one network thread that alone uses the broker client, in order.

        A page is acknowledged only once it is filed (`_make_durable`); the broker serves the next page
        from where the last one ended (`next`), so nothing waits for an acknowledgement. With a broker
        that gives no `next` (older than this tool), each page is acknowledged before the next is asked
        for, and a page that brought no progress ends the pull as stalled."""
        report = PullReport()
        durable.remove_stale_temp_files(self._outdir)
        seen: set[str] = set()
        with (
            Openers(functools.partial(open_or_refusal, self._keys)) as openers,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-clinic-network") as network,
        ):
            fetching: Future[tuple[InboxPage, Opening[Opened]]] | None = network.submit(
                self._fetch, openers, limit, INBOX_START
            )
            telling: tuple[list[str], Future[AckResult]] | None = None  # the last page's acknowledgement
            while fetching is not None:
                try:
                    page, opening = fetching.result()
                except (BrokerUnavailable, BrokerRefusedClinic) as exc:
                    report.broker_error = exc
                    break
                reads_on = page.more and page.next is not None
                if reads_on and all(item.delivery_id in seen for item in page.items):
                    # "More", yet nothing new served: reading on would never end.
                    report.broker_error = BrokerUnavailable(
                        "the broker said more waits in the inbox but served nothing new; pull again later"
                    )
                    break
                fetching = None
                if reads_on and not self._should_stop():
                    fetching = network.submit(self._fetch, openers, limit, page.next)
                filed, refusals, go_on = self._file(page, opening, seen, report)
                told = True if telling is None else self._acknowledged(*telling, report)
                telling = None
                if not told:  # the broker is away: what this page filed is acknowledged by the next pull
                    for delivery in filed:
                        report.not_acknowledged[delivery] = "written, but the acknowledgement did not go through"
                    break
                if filed:
                    telling = (filed, network.submit(self._client.acknowledge, filed))
                refused = bool(refusals) and self._reported(network.submit(self._client.refuse, refusals), report)
                if not go_on or report.broker_error or report.stopped or not page.more:
                    break
                if not reads_on:  # an older broker: acknowledge first, or it serves this page again
                    progressed = telling is not None and self._acknowledged(*telling, report)
                    telling = None
                    if report.broker_error:
                        break
                    if not (progressed or refused):
                        report.stalled = True
                        break
                    fetching = network.submit(self._fetch, openers, limit, INBOX_START)
            if telling is not None:
                self._acknowledged(*telling, report)
        return report

    def _fetch(self, openers: Openers[Opened], limit: int, after: str | None) -> tuple[InboxPage, Opening[Opened]]:
        """In the network thread: a page, and its envelopes already being opened while the page before is filed."""
        page = self._client.fetch_inbox(limit, after)
        return page, openers.start(page.items)

    def _file(
        self, page: InboxPage, opened: Opening[Opened], seen: set[str], report: PullReport
    ) -> tuple[list[str], list[Refusal], bool]:
        """Open, check and file one page: (ids now safely filed, to acknowledge; refusals to report; whether
        to read on: not after a failure of this machine's disk)."""
        already: list[str] = []  # on disk and in the ledger since an earlier pull: acknowledge again
        filings: list[_Filing] = []
        page_references: set[str] = set()  # referrals this page files, so a second delivery of one is refused
        to_refuse: list[Refusal] = []
        local_failure = False
        with durable.NewFiles(self._outdir) as files:
            for index, item in enumerate(page.items):
                if self._should_stop():
                    report.stopped = True  # what is filed is acknowledged; the rest waits at the broker
                    break
                if item.delivery_id in seen:
                    continue  # served again in this run: its outcome is already counted
                seen.add(item.delivery_id)
                report.pulled += 1
                try:
                    filing = self._plan(opened.get(index), report, page_references)
                except Refused as exc:
                    report.refused[item.delivery_id] = str(exc)
                    if exc.report_as is not None:
                        to_refuse.append(Refusal(delivery_id=item.delivery_id, reason=exc.report_as))
                    continue
                except OSError as exc:
                    # The disk, not the envelope: stop, and acknowledge only what gets safely filed.
                    report.local_failures[item.delivery_id] = f"cannot write: {exc.strerror or exc}"
                    local_failure = True
                    break
                finally:
                    self._on_item(report)
                if filing is None:
                    already.append(item.delivery_id)
                    continue
                filings.append(filing)
                if filing.data is not None:
                    files.add(filing.data)  # written meanwhile, while the next envelope is opened
            filed = self._write(filings, files, report)
        safe = self._make_durable(already, filed, report)
        return safe, to_refuse, not (local_failure or len(filed) < len(filings) or (filed and not safe))

    def _plan(self, opened: Opened, report: PullReport, page_references: set[str]) -> _Filing | None:
        """Decide what filing one opened and checked item takes; None when it is already filed."""
        if isinstance(opened, Refused):
            raise opened
        if isinstance(opened, NoticePayload):
            return self._plan_notice(opened, report)
        payload = opened
        delivery, reference = payload.delivery_id, payload.reference
        known = self._ledger.written_reference(delivery)
        if known is not None or self._ledger.is_acknowledged(delivery):
            if known not in (None, reference):
                raise Refused(f"the ledger has this delivery under another reference ({known})")
            report.already_had += 1  # a replay, or a crash between writing and acknowledging
            return None
        if self._ledger.delivery_of(reference) is not None or reference in page_references:
            raise Refused(f"reference {reference} was already written for another delivery")
        record = FileRecord(delivery, reference, referral_file.path_for(self._outdir, reference))
        data = referral_file.encode(ReceivedReferral.from_payload(payload, received_at=self._clock()))
        filing = self._unless_on_disk(record, data, "referral", report)
        page_references.add(reference)
        return filing

    def _plan_notice(self, notice: NoticePayload, report: PullReport) -> _Filing | None:
        """A notice is filed beside its referral, under its own id, with the same crash-safe steps."""
        known = self._ledger.written_reference(notice.notice_id)
        if known is not None or self._ledger.is_acknowledged(notice.notice_id):
            if known not in (None, notice.reference):
                raise Refused(f"the ledger has this notice under another reference ({known})")
            report.already_had += 1
            return None
        target = notice_file.path_for(self._outdir, notice.reference, notice.kind, notice.notice_id)
        record = FileRecord(notice.notice_id, notice.reference, target, notice=notice.kind)
        data = notice_file.encode(ReceivedNotice.from_payload(notice, received_at=self._clock()))
        return self._unless_on_disk(record, data, "notice", report)

    def _unless_on_disk(self, record: FileRecord, data: bytes, counts_as: str, report: PullReport) -> _Filing:
        if not record.file.exists():
            return _Filing(record, data, counts_as)
        if self._ledger.was_writing(record.delivery_id, record.file):  # we renamed it into place, then crashed
            report.already_had += 1
            return _Filing(record, None, counts_as)
        raise Refused(f"{record.file} exists but the ledger has no record of writing it; refusing to overwrite")

    def _write(self, filings: list[_Filing], files: durable.NewFiles, report: PullReport) -> list[_Filing]:
        """Give the page's new files (added to `files` in the order of `filings`) their names: returns the
        filings now on disk under their own names."""
        new = [f for f in filings if f.data is not None]
        if not new:
            return filings
        try:
            self._ledger.record_writing([f.record for f in new])  # durable before any file takes its name
            temps = files.sync()
            for filing, temp in zip(new, temps, strict=True):
                files.publish(temp, filing.record.file)
        except OSError as exc:
            # Nothing new is acknowledged; what was renamed is recognised by the next pull.
            for filing in new:
                report.local_failures[filing.record.delivery_id] = f"cannot write: {exc.strerror or exc}"
            return [f for f in filings if f.data is None]
        for filing in new:
            if filing.counts_as == "referral":
                report.written += 1
            else:
                report.notices += 1
            report.references.setdefault(filing.record.reference)
        return filings

    def _make_durable(self, already: list[str], filed: list[_Filing], report: PullReport) -> list[str]:
        """Make the page's names and ledger lines durable; returns the ids now safe to acknowledge.

        The folder is fsync'd first (it also holds names an interrupted earlier pull renamed), then the
        "written" lines are appended and fsync'd: a "written" line on disk always means a file on disk."""
        delivery_ids = already + [f.record.delivery_id for f in filed]
        if not delivery_ids:
            return []
        try:
            durable.fsync_dir(self._outdir)
            self._ledger.record_written([f.record for f in filed])
        except OSError as exc:
            for delivery in delivery_ids:
                report.local_failures[delivery] = f"written, but not yet safely on disk: {exc.strerror or exc}"
            return []
        return delivery_ids

    def _reported(self, answer: Future[RefusalResult], report: PullReport) -> bool:
        """The broker's answer to what can never be opened here; True when it took one out of the inbox."""
        try:
            result = answer.result()
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            report.broker_error = exc
            return False
        report.reported.extend(result.refused)
        return bool(result.refused)

    def _acknowledged(self, delivery_ids: list[str], answer: Future[AckResult], report: PullReport) -> bool:
        """The broker's answer to an acknowledgement, recorded; True when it confirmed at least one."""
        try:
            result = answer.result()
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
