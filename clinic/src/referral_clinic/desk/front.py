"""The desk's working part: the unlocked clinic, the pull in the background, and the staff's actions.

Pages read from it; a background thread pulls as `watch` does (the same `pull_once`, under the clinic
folder's lock, with `watch.next_delay`'s back-off), then writes each new or changed referral's PDF.
One lock inside the desk keeps a pull and an action (mark, delete) from running at once; the folder's
own lock keeps a `pull` or `watch` started elsewhere out, with a clear message on the page.

Every change the pages may show (a pull that filed something, its outcome, a mark, a deletion) moves the
desk's `generation` on and wakes the pages' scripts waiting in `wait_for_change` (decision 0137), so what
the pull files is on the screen at once instead of at the page's next look.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from referral_clinic import broker_pins, watch
from referral_clinic.broker_client import BrokerRefusedClinic, BrokerUnavailable
from referral_clinic.broker_pins import PinChange
from referral_clinic.cli import LongPoll, pull_once
from referral_clinic.desk import deletion, pdf
from referral_clinic.desk.states import DeskStates, State
from referral_clinic.desk.texts import Texts
from referral_clinic.keystore import ClinicConfig, ClinicDir, ClinicDirBusy, ClinicDirProblem
from referral_clinic.ledger import Ledger, LedgerDamaged
from referral_clinic.referral_view import FileSeen, LocalReferral, ReferralUnreadable, files_by_reference, load
from referral_clinic.session import Session, unlock
from referral_protocol.enrolment import InboxPage

PAGE = 100
#: At most this many page scripts wait for a change at once: each holds one of the desk server's threads.
WAITING_MAX = 2


@dataclass
class PullStatus:
    """What the last pull came to, for the banner on every page; `problem` is a key the pages translate."""

    at: datetime | None = None  # when the last pull ended
    problem: str | None = None  # broker_away, broker_refused, folder_busy, disk, refused, pdf
    detail: str = ""
    pulled: int = 0
    running: bool = False
    failures: int = 0
    key_change: PinChange | None = None  # the broker's signing key changed lately (broker_pins)


@dataclass
class Listing:
    referrals: list[tuple[LocalReferral, State]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # file names only


#: How long the desk shows that the broker's signing key changed.
KEY_CHANGE_SHOWN = timedelta(days=30)


def recent_key_change(folder: Path) -> PinChange | None:
    """The last change of the broker keys this clinic trusts, if it was lately (never fails the pull)."""
    try:
        changes = broker_pins.load(folder).changes
    except ClinicDirProblem:
        return None
    if not changes or datetime.now(UTC) - changes[-1].at > KEY_CHANGE_SHOWN:
        return None
    return changes[-1]


def _no_session() -> Session:
    raise RuntimeError("the desk waits on the broker only once unlocked")


class Busy(Exception):
    """Another referral-clinic holds the clinic folder; try again in a moment."""


class FrontDesk:
    def __init__(
        self,
        folder: Path,
        outdir: Path,
        texts: Texts,
        *,
        transport: httpx.BaseTransport | None = None,
        interval: float | None = None,
    ) -> None:
        self.clinic = ClinicDir(folder)
        self.outdir = outdir
        self.texts = texts
        self.interval = interval
        self.transport = transport
        self.session: Session | None = None
        self.config: ClinicConfig | None = None
        self.folder_problem: str | None = None
        try:
            self.config = self.clinic.load_config()
        except ClinicDirProblem as exc:
            self.folder_problem = str(exc)  # shown on the unlock page, instead of the passphrase field
        self.states = DeskStates(folder)
        self.status = PullStatus()
        self._work = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._read: dict[str, tuple[tuple[FileSeen, ...], LocalReferral]] = {}
        self._changes = threading.Condition()
        self._generation = 0
        self._waiting = 0

    @property
    def clinic_name(self) -> str:
        return self.config.name if self.config else ""

    def unlock(self, passphrase: str) -> None:
        """Open the key file; ClinicDirProblem says what is wrong (a wrong passphrase, a damaged folder)."""
        if self.session is None:
            self.session = unlock(self.clinic.path, passphrase)
            self.config = self.session.config
            self.folder_problem = None
        self.pull_now()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="referral-desk-pull", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._changes:
            self._changes.notify_all()  # the pages' waiting requests answer at once
        if self._thread is not None:
            self._thread.join(timeout=30)

    def pull_now(self) -> None:
        self._wake.set()

    @property
    def generation(self) -> int:
        """Moves on with every change a page may show; a page notes it before it reads what it shows."""
        with self._changes:
            return self._generation

    def changed(self) -> None:
        with self._changes:
            self._generation += 1
            self._changes.notify_all()

    def wait_for_change(self, seen: int, timeout: float) -> int | None:
        """The generation once it is not `seen` any more, or after `timeout` seconds, or when the desk stops;
        None at once when WAITING_MAX requests already wait (checked and counted under one lock)."""
        with self._changes:
            if self._waiting >= WAITING_MAX:
                return None
            self._waiting += 1
            try:
                self._changes.wait_for(lambda: self._generation != seen or self._stop.is_set(), timeout)
                return self._generation
            finally:
                self._waiting -= 1

    def _run(self) -> None:
        pull = True
        poll = LongPoll(lambda: self.session or _no_session(), self.transport, limit=PAGE)
        while not self._stop.is_set():
            session = self.session
            if session is None:
                self._wake.wait()
                self._wake.clear()
                continue
            if pull:
                self.pull(first_page=poll.take())
            if self.status.failures or self.interval is not None:
                self._pause(self.status.failures)
                pull = True
                continue
            # As `watch` does: the broker answers when something arrives; a click on "pull now" ends the wait.
            waited = watch.wait_for_news(poll, wait=watch.DEFAULT_WAIT, interrupted=self._wake.is_set)
            woken = self._wake.is_set()
            self._wake.clear()
            if woken or waited is not watch.Waited.NEWS:
                poll.take()  # a click, or nothing: the pull lists afresh
            pull = woken or waited in (watch.Waited.NEWS, watch.Waited.FAILED)
            if not woken and waited in (watch.Waited.TOO_SOON, watch.Waited.FAILED):
                self._pause(int(waited is watch.Waited.FAILED))  # the broker does not hold, or is away: no spinning
                pull = True

    def _pause(self, failures: int) -> None:
        interval = self.interval or watch.DEFAULT_INTERVAL
        self._wake.wait(watch.next_delay(failures, interval=interval, max_backoff=15 * 60))
        self._wake.clear()

    def pull(self, first_page: InboxPage | None = None) -> None:
        """One pull, its PDFs, and the sweep of deleted referrals' leftovers; the outcome goes to `status`.
        `first_page`: the inbox's first page, listed already by the long poll."""
        session = self.session
        if session is None:
            return
        before = (self.status.problem, self.status.detail)
        status = PullStatus(at=self.status.at, running=True, failures=self.status.failures)
        self.status = status
        with self._work:
            try:
                self.outdir.mkdir(mode=0o700, parents=True, exist_ok=True)
                report = pull_once(
                    session,
                    self.outdir,
                    limit=PAGE,
                    fhir_export=False,
                    transport=self.transport,
                    should_stop=self._stop.is_set,
                    first_page=first_page,
                )
                status.pulled = report.written + report.notices
                status.key_change = recent_key_change(self.clinic.path)
                if status.pulled:
                    self.changed()  # the files are on disk: the pages show them now, their PDFs follow
                self._after_pull(status)
                error = report.broker_error
                if isinstance(error, BrokerRefusedClinic):
                    status.problem, status.detail = "broker_refused", str(error)
                elif isinstance(error, BrokerUnavailable):
                    status.problem, status.detail = "broker_away", str(error)
                elif report.unknown_broker_keys:
                    status.problem, status.detail = "broker_key_unknown", ", ".join(sorted(report.unknown_broker_keys))
                elif report.local_failures:
                    status.problem, status.detail = "disk", next(iter(report.local_failures.values()))
                elif report.refused or report.not_acknowledged:
                    status.problem = "refused"
                    status.detail = next(iter({**report.refused, **report.not_acknowledged}.values()))
            except ClinicDirBusy:
                status.problem = "folder_busy"
            except LedgerDamaged as exc:
                status.problem, status.detail = "disk", str(exc)
            except OSError as exc:
                status.problem, status.detail = "disk", exc.strerror or str(exc)
            finally:
                status.at = datetime.now(UTC)
                status.running = False
                status.failures = status.failures + 1 if status.problem else 0
                if status.pulled or (status.problem, status.detail) != before:
                    self.changed()

    def _after_pull(self, status: PullStatus) -> None:
        with self.clinic.locked():
            deletion.sweep(Ledger(self.clinic.ledger_file), self.outdir)
        failed = pdf.refresh(self.outdir, self.texts, self.clinic_name)
        if failed:
            status.problem, status.detail = "pdf", failed

    def listing(self) -> Listing:
        """Every referral in OUTDIR; one whose files are unchanged since the last listing is not read again."""
        found = Listing()
        kept: dict[str, tuple[tuple[FileSeen, ...], LocalReferral]] = {}
        for reference, files in files_by_reference(self.outdir).items():
            seen = tuple(f for f in files if f.name.endswith(".json"))
            cached = self._read.get(reference)
            try:
                referral = cached[1] if cached is not None and cached[0] == seen else load(self.outdir, reference)
            except FileNotFoundError:
                continue  # deleted meanwhile
            except ReferralUnreadable as exc:
                found.unreadable.append(str(exc))
                continue
            kept[reference] = (seen, referral)
            found.referrals.append((referral, self.states.state_of(referral)))
        self._read = kept
        found.referrals.sort(key=lambda pair: pair[0].received_at, reverse=True)
        return found

    def referral(self, reference: str) -> tuple[LocalReferral, State] | None:
        try:
            referral = load(self.outdir, reference)
        except (FileNotFoundError, ValueError):
            return None
        return referral, self.states.state_of(referral)

    def mark(self, reference: str, state: State) -> None:
        with self._work:
            self.states.mark(reference, state)
        self.changed()

    def delete(self, reference: str) -> int:
        """Busy when another referral-clinic holds the folder; OSError when the disk refuses."""
        with self._work:
            try:
                with self.clinic.locked():
                    return deletion.delete_referral(
                        Ledger(self.clinic.ledger_file), self.outdir, reference, self.states
                    )
            except ClinicDirBusy:
                raise Busy from None
            finally:
                self.changed()
