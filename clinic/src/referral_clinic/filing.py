"""Filing one page of the inbox: each opened envelope planned as a file, the page's files written and made
durable, and the ledger told at each step, so a crash at any point loses nothing and duplicates nothing.

The order: the page's "writing" lines reach the disk; its files are written under temporary names and
fsync'd; they take their names; the folder is fsync'd; the "written" lines are appended and fsync'd.
Only what got through all of it is handed back to be acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from referral_clinic import broker_pins, durable, notice_file, referral_file
from referral_clinic.envelope_check import ClinicKeys, Refused, UnknownBrokerKey, open_item
from referral_clinic.ledger import FileRecord, Ledger
from referral_clinic.notice_file import ReceivedNotice
from referral_clinic.pull_report import PullReport, Received
from referral_clinic.referral_file import ReceivedReferral
from referral_protocol.enrolment import InboxPage, Refusal
from referral_protocol.key_change import KeyChangeStatement
from referral_protocol.notice import NoticePayload
from referral_protocol.referral import ReferralPayload


@dataclass(frozen=True)
class _Filing:
    """One item on its way to disk: its ledger record, its bytes (None: an interrupted pull already gave it
    its name, recognised by its "writing" line), and whether it may replace what has the name (only an
    empty claim an interrupted pull left, never anyone else's file)."""

    record: FileRecord
    data: bytes | None
    received: Received
    replace: bool = False


@dataclass
class FiledPage:
    acknowledge: list[str] = field(default_factory=list)  # ids safely filed (now or before)
    refusals: list[Refusal] = field(default_factory=list)  # to report: no machine of ours can ever take them
    read_on: bool = True  # False after a failure of this machine's disk: acknowledge what is safe, and stop


class Filer:
    """Files pages into `outdir` for one pull; `seen` remembers what this pull has already counted."""

    def __init__(
        self,
        ledger: Ledger,
        outdir: Path,
        keys: ClinicKeys,
        report: PullReport,
        *,
        clock: Callable[[], datetime],
        should_stop: Callable[[], bool],
        on_item: Callable[[PullReport], None],
    ) -> None:
        self._ledger = ledger
        self._outdir = outdir
        self._keys = keys
        self._report = report
        self._clock = clock
        self._should_stop = should_stop
        self._on_item = on_item
        self._seen: set[str] = set()

    def all_seen(self, page: InboxPage) -> bool:
        return all(item.delivery_id in self._seen for item in page.items)

    def file(self, page: InboxPage) -> FiledPage:
        """Open, check and file one page."""
        report, result = self._report, FiledPage()
        already: list[str] = []  # on disk and in the ledger since an earlier pull: acknowledge again
        filings: list[_Filing] = []
        page_references: set[str] = set()  # referrals this page files, so a second delivery of one is refused
        with durable.NewFiles(self._outdir) as files:
            for item in page.items:
                if self._should_stop():
                    report.stopped = True  # what is filed is acknowledged; the rest waits at the broker
                    break
                if item.delivery_id in self._seen:
                    continue  # served again in this run: its outcome is already counted
                self._seen.add(item.delivery_id)
                report.pulled += 1
                try:
                    opened = open_item(item, self._keys)
                    if isinstance(opened, KeyChangeStatement):
                        # Pinned (durably) before the page's next envelope is opened: those after it in the
                        # page may be signed by the new key. Acknowledged like a filed item.
                        self._keys, message = broker_pins.apply(self._keys, opened, now=self._clock())
                        if message:
                            report.key_changes.append(message)
                        # The broker serves it on every reading until the next change: acknowledged once
                        # from here, so the ledger does not grow by a line a pull.
                        if message or not self._ledger.is_acknowledged(item.delivery_id):
                            already.append(item.delivery_id)
                        continue
                    filing = self._plan(opened, page_references)
                except Refused as exc:
                    report.refused[item.delivery_id] = str(exc)
                    if isinstance(exc, UnknownBrokerKey):
                        report.unknown_broker_keys.add(exc.signer)
                    if exc.report_as is not None:
                        result.refusals.append(Refusal(delivery_id=item.delivery_id, reason=exc.report_as))
                    continue
                except OSError as exc:
                    # The disk, not the envelope: stop, and acknowledge only what gets safely filed.
                    report.local_failures[item.delivery_id] = f"cannot write: {exc.strerror or exc}"
                    result.read_on = False
                    break
                finally:
                    self._on_item(report)
                if filing is None:
                    already.append(item.delivery_id)
                    continue
                filings.append(filing)
                if filing.data is not None:
                    files.add(filing.data)  # written meanwhile, while the next envelope is opened
            filed = self._write(filings, files)
        result.acknowledge = self._make_durable(already, filed)
        if len(filed) < len(filings) or (filed and not result.acknowledge):
            result.read_on = False
        return result

    def _plan(self, opened: ReferralPayload | NoticePayload, page_references: set[str]) -> _Filing | None:
        """Decide what filing one opened and checked item takes; None when it is already filed."""
        if isinstance(opened, NoticePayload):
            return self._plan_notice(opened)
        payload = opened
        delivery, reference = payload.delivery_id, payload.reference
        known = self._ledger.written_reference(delivery)
        if known is not None or self._ledger.is_acknowledged(delivery):
            if known not in (None, reference):
                raise Refused(f"the ledger has this delivery under another reference ({known})")
            self._report.already_had += 1  # a replay, or a crash between writing and acknowledging
            return None
        if self._ledger.delivery_of(reference) is not None or reference in page_references:
            raise Refused(f"reference {reference} was already written for another delivery")
        record = FileRecord(delivery, reference, referral_file.path_for(self._outdir, reference))
        received = Received(reference, "referral", self._clock())
        data = referral_file.encode(ReceivedReferral.from_payload(payload, received_at=received.at))
        filing = self._unless_on_disk(record, data, received)
        page_references.add(reference)
        return filing

    def _plan_notice(self, notice: NoticePayload) -> _Filing | None:
        """A notice is filed beside its referral, under its own id, with the same crash-safe steps."""
        known = self._ledger.written_reference(notice.notice_id)
        if known is not None or self._ledger.is_acknowledged(notice.notice_id):
            if known not in (None, notice.reference):
                raise Refused(f"the ledger has this notice under another reference ({known})")
            self._report.already_had += 1
            return None
        target = notice_file.path_for(self._outdir, notice.reference, notice.kind, notice.notice_id)
        record = FileRecord(notice.notice_id, notice.reference, target, notice=notice.kind)
        received = Received(notice.reference, str(notice.kind), self._clock())
        data = notice_file.encode(ReceivedNotice.from_payload(notice, received_at=received.at))
        return self._unless_on_disk(record, data, received)

    def _unless_on_disk(self, record: FileRecord, data: bytes, received: Received) -> _Filing:
        if not record.file.exists():
            return _Filing(record, data, received)
        if self._ledger.was_writing(record.delivery_id, record.file):
            if record.file.stat().st_size == 0:  # our claim on the name, left by a crash before the rename
                return _Filing(record, data, received, replace=True)
            self._report.already_had += 1  # we gave it its name, then crashed
            return _Filing(record, None, received)
        raise Refused(f"{record.file} exists but the ledger has no record of writing it; refusing to overwrite")

    def _write(self, filings: list[_Filing], files: durable.NewFiles) -> list[_Filing]:
        """Give the page's new files (added to `files` in the order of `filings`) their names: returns the
        filings now on disk under their own names."""
        new = [f for f in filings if f.data is not None]
        if not new:
            return filings
        try:
            self._ledger.record_writing([f.record for f in new])  # durable before any file takes its name
            temps = files.sync()
            for filing, temp in zip(new, temps, strict=True):
                files.publish(temp, filing.record.file, replace=filing.replace)
        except OSError as exc:
            # Nothing new is acknowledged; what took its name is recognised by the next pull.
            for filing in new:
                self._report.local_failures[filing.record.delivery_id] = f"cannot write: {exc.strerror or exc}"
            return [f for f in filings if f.data is None]
        for filing in new:
            self._report.arrived(filing.received)
        return filings

    def _make_durable(self, already: list[str], filed: list[_Filing]) -> list[str]:
        """Make the page's names and ledger lines durable; returns the ids now safe to acknowledge.

        The folder is fsync'd first (it also holds names an interrupted earlier pull gave), then the
        "written" lines are appended and fsync'd: a "written" line on disk always means a file on disk."""
        delivery_ids = already + [f.record.delivery_id for f in filed]
        if not delivery_ids:
            return []
        try:
            durable.fsync_dir(self._outdir)
            self._ledger.record_written([f.record for f in filed])
        except OSError as exc:
            for delivery in delivery_ids:
                self._report.local_failures[delivery] = f"written, but not yet safely on disk: {exc.strerror or exc}"
            return []
        return delivery_ids
