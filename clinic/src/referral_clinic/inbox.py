"""Pulling the inbox: fetch a page, file it, acknowledge it; what can never be opened here is reported.

The order is the promise: a delivery is acknowledged only after its referral (or notice) is on disk and
the ledger says so (`filing`). What fails a check (`envelope_check`) is neither written nor acknowledged;
what no machine of this clinic could ever open is reported to the broker, which takes it out of the
inbox and shows it to its operators.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from referral_clinic import durable
from referral_clinic.broker_client import BrokerClient, BrokerRefusedClinic, BrokerUnavailable
from referral_clinic.envelope_check import ClinicKeys
from referral_clinic.filing import Filer
from referral_clinic.ledger import Ledger
from referral_clinic.pull_report import PullReport as PullReport  # also where callers found it before
from referral_protocol.enrolment import INBOX_START, AckResult, InboxPage, RefusalResult

DEFAULT_LIMIT = 100


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

    def pull(self, limit: int = DEFAULT_LIMIT, *, first_page: InboxPage | None = None) -> PullReport:
        """Read the inbox page by page, from `start` (or `first_page`, the first page a long poll listed
        already) and then each page's `next`.

        One network thread alone uses the broker client: while a page is filed here, it fetches the next
        one and acknowledges the one before, so neither the disk nor the broker waits for the other. A
        page is acknowledged only once it is filed; the broker serves the next page from where the last
        one ended, so nothing waits for an acknowledgement."""
        report = PullReport()
        durable.remove_stale_temp_files(self._outdir)
        filer = Filer(
            self._ledger,
            self._outdir,
            self._keys,
            report,
            clock=self._clock,
            should_stop=self._should_stop,
            on_item=self._on_item,
        )
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="referral-clinic-network") as network:
            fetching: Future[InboxPage] | None
            if first_page is None:
                fetching = network.submit(self._client.fetch_inbox, limit, INBOX_START)
            else:
                fetching = Future()
                fetching.set_result(first_page)
            acknowledging: tuple[list[str], Future[AckResult]] | None = None  # the page before
            while fetching is not None:
                page = self._fetched(fetching, filer, report)
                if page is None:
                    break
                fetching = None
                if page.more and page.next is not None and not self._should_stop():
                    fetching = network.submit(self._client.fetch_inbox, limit, page.next)
                filed = filer.file(page)
                if acknowledging is not None and not self._acknowledged(*acknowledging, report):
                    # the broker is away: what this page filed is acknowledged by the next pull
                    for delivery in filed.acknowledge:
                        report.not_acknowledged[delivery] = "written, but the acknowledgement did not go through"
                    acknowledging = None
                    break
                acknowledging = None
                if filed.acknowledge:
                    acknowledging = (filed.acknowledge, network.submit(self._client.acknowledge, filed.acknowledge))
                if filed.refusals:
                    self._reported(network.submit(self._client.refuse, filed.refusals), report)
                if not filed.read_on or report.broker_error or report.stopped:
                    break
            if acknowledging is not None:
                self._acknowledged(*acknowledging, report)
        return report

    def _fetched(self, fetching: Future[InboxPage], filer: Filer, report: PullReport) -> InboxPage | None:
        """The page fetched, or None (and why, in the report) when the pull cannot go on."""
        try:
            page = fetching.result()
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            report.broker_error = exc
            return None
        if page.more and page.next is None:  # every broker names the next page: file this one, and stop
            report.broker_error = BrokerUnavailable("the broker said more waits but not where it begins; pull again")
        elif page.more and filer.all_seen(page):  # "more", yet nothing new served: reading on would never end
            report.broker_error = BrokerUnavailable(
                "the broker said more waits in the inbox but served nothing new; pull again later"
            )
            return None
        return page

    def _reported(self, answer: Future[RefusalResult], report: PullReport) -> None:
        """The broker's answer to what can never be opened here."""
        try:
            result = answer.result()
        except (BrokerUnavailable, BrokerRefusedClinic) as exc:
            report.broker_error = exc
            return
        report.reported.extend(result.refused)

    def _acknowledged(self, delivery_ids: list[str], answer: Future[AckResult], report: PullReport) -> bool:
        """The broker's answer to an acknowledgement, recorded; False when it did not go through."""
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
        return True
