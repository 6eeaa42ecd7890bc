"""The desk's pages: a small WSGI application, server-rendered HTML; one small script of its own.

Every answer passes the guard first (guard.py): the Host, then the cookie (except for the start link
and the style sheet), then for an action the CSRF token. Referral text is hostile input: the templates
are Jinja2 with autoescape on, and nothing is marked safe.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, PackageLoader, StrictUndefined

from referral_clinic import referral_file
from referral_clinic.desk import deletion
from referral_clinic.desk.front import Busy, FrontDesk
from referral_clinic.desk.guard import SECURITY_HEADERS, Guard
from referral_clinic.desk.pdf import ERASURE_ADVICE, FIELD_NAMES, WITHDRAWAL_ADVICE, consent_is_current
from referral_clinic.desk.states import MARKABLE, State
from referral_clinic.desk.texts import N_, phone_shown, today_in_oslo
from referral_clinic.keystore import ClinicDirProblem
from referral_clinic.referral_view import ReferralUnreadable
from referral_protocol.consent import CONSENT_VERSION
from referral_protocol.wording import consent_texts

log = logging.getLogger(__name__)
MAX_FORM = 16 * 1024
MAX_ROWS = 200  # the newest; searching and filtering reach the others
# How often the inbox and a referral page look again when they cannot wait on /changes (static/desk.js;
# docs/decisions/0016, 0137).
REFRESH_SECONDS = 10
# How long GET /changes holds a page's request when nothing changes (decision 0137).
HOLD_SECONDS = 25

PROBLEMS = {
    "broker_away": N_(
        "The broker cannot be reached just now. Referrals already on this computer are safe; "
        "the desk tries again by itself."
    ),
    "broker_refused": N_(
        "The broker refused this clinic. If the clinic is new, its key may not be verified yet: ask the "
        "broker's operator to verify the fingerprint that `referral-clinic fingerprint` shows."
    ),
    "folder_busy": N_(
        "Another referral-clinic program (a pull, a watch or another desk) is working in this clinic folder. "
        "The desk tries again by itself; nothing is lost."
    ),
    "disk": N_(
        "This computer could not save what arrived. Nothing unsaved was acknowledged: it waits at the broker. "
        "Free some disk space; the desk tries again by itself."
    ),
    "refused": N_("Something from the broker could not be taken in and was not acknowledged."),
    "delete_unfinished": N_(
        "The referral is recorded as deleted, but some of its files could not be removed yet. The desk removes "
        "them by itself after the next fetch; tell your IT person if this goes on."
    ),
    "not_saved": N_(
        "This computer could not save the change, so nothing was changed. If the disk is full, free some space, "
        "then try again."
    ),
    "pdf": N_("A PDF could not be written. The referral itself is safe on this computer."),
    "broker_key_unknown": N_(
        "The broker signed something with a key this clinic does not trust yet. It waits at the broker; nothing is "
        "lost. Call the broker's operator on a number you already know, ask for the new broker key and its "
        "fingerprint, and pin it with `referral-clinic pin-broker-key`."
    ),
}
STATE_NAMES = {
    State.NEW: N_("New"),
    State.READ: N_("Read"),
    State.HANDLED: N_("Handled"),
    State.WITHDRAWN: N_("Withdrawn"),
    State.ERASED: N_("Erasure requested"),
}


_OUTSIDE = frozenset({"host", "used_link", "no_cookie", "csrf"})


@dataclass
class Answer:
    status: str
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


def _redirect(to: str, *extra: tuple[str, str]) -> Answer:
    return Answer("303 See Other", b"", headers=[("Location", to), *extra])


class DeskApp:
    def __init__(
        self,
        front: FrontDesk,
        guard: Guard,
        *,
        refresh_seconds: int = REFRESH_SECONDS,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self.front = front
        self.guard = guard
        self.refresh_seconds = refresh_seconds
        self.hold_seconds = hold_seconds
        texts = front.texts
        env = Environment(
            loader=PackageLoader(__package__, "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_callables(texts.gettext, texts.ngettext, newstyle=True)  # type: ignore[attr-defined]
        env.globals.update(
            lang=texts.lang,
            when=texts.when,
            day=texts.day,
            age=texts.age,
            category=texts.category,
            phone=phone_shown,
            state_names=STATE_NAMES,
            problems=PROBLEMS,
            field_names=FIELD_NAMES,
            markable=MARKABLE,
            erasure_advice=ERASURE_ADVICE,
            withdrawal_advice=WITHDRAWAL_ADVICE,
        )
        self.env = env
        static = resources.files(__package__).joinpath("static")
        self.static = {
            "/static/desk.css": (static.joinpath("desk.css").read_bytes(), "text/css; charset=utf-8"),
            "/static/desk.js": (static.joinpath("desk.js").read_bytes(), "text/javascript; charset=utf-8"),
        }

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            answer = self._answer(environ)
        except ReferralUnreadable as exc:  # names the file, never its content
            answer = self._page("problem.html", "500 Internal Server Error", kind="unreadable", detail=str(exc))
        except Exception:
            log.exception("the desk failed to answer a request")  # the trace names code, never a referral
            answer = self._page("problem.html", "500 Internal Server Error", kind="failed")
        headers = [("Content-Type", answer.content_type), *SECURITY_HEADERS, *answer.headers]
        headers.append(("Content-Length", str(len(answer.body))))
        start_response(answer.status, headers)
        return [answer.body]

    def _answer(self, environ: Mapping[str, Any]) -> Answer:
        if not self.guard.host_ok(environ):
            return self._page("problem.html", "400 Bad Request", kind="host", origin=self.guard.origin)
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if path in self.static:  # the same for everyone, and nothing of the clinic in them
            return Answer("200 OK", *self.static[path])
        if path == "/start" and method == "GET":
            if self.guard.swap_token(query.get("token", "")):
                return _redirect("/", self.guard.cookie_header())
            return self._page("problem.html", "403 Forbidden", kind="used_link")
        if not self.guard.has_cookie(environ):
            return self._page("problem.html", "401 Unauthorized", kind="no_cookie")
        if method == "POST":
            form = _form(environ)
            if form is None or not self.guard.action_ok(environ, form):
                return self._page("problem.html", "403 Forbidden", kind="csrf")
            return self._act(path, form)
        if method not in ("GET", "HEAD"):
            return self._page("problem.html", "405 Method Not Allowed", kind="not_found")
        if self.front.session is None:
            if path == "/":
                return self._unlock_page("200 OK")
            return _redirect("/")
        if path == "/":
            return self._inbox(query)
        if path == "/changes":
            return self._changes(query)
        parts = path.strip("/").split("/")
        if len(parts) in (2, 3) and parts[0] == "referral" and referral_file.is_file_safe(parts[1]):
            return self._referral(parts[1], parts[2] if len(parts) == 3 else "")
        return self._page("problem.html", "404 Not Found", kind="not_found")

    def _act(self, path: str, form: Mapping[str, str]) -> Answer:
        if path == "/unlock":
            try:
                self.front.unlock(form.get("passphrase", ""))
            except ClinicDirProblem as exc:
                return self._unlock_page("422 Unprocessable Content", error=str(exc))
            return _redirect("/")
        if self.front.session is None:
            return _redirect("/")
        if path == "/pull":
            self.front.pull_now()
            return _redirect("/?done=pulling")
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "referral" or not referral_file.is_file_safe(parts[1]):
            return self._page("problem.html", "404 Not Found", kind="not_found")
        reference, action = parts[1], parts[2]
        if self.front.referral(reference) is None:
            return self._page("problem.html", "404 Not Found", kind="not_found")
        if action == "mark" and form.get("state") in {s.value for s in MARKABLE}:
            try:
                self.front.mark(reference, State(form["state"]))
            except OSError as exc:
                return self._failed_action(reference, exc.strerror or str(exc))
            return _redirect(f"/referral/{reference}")
        if action == "delete" and form.get("confirm") == "yes":
            try:
                self.front.delete(reference)
            except Busy:
                return self._failed_action(reference, "", kind="folder_busy")
            except deletion.DeletionUnfinished as exc:
                return self._failed_action(reference, str(exc), kind="delete_unfinished")
            except OSError as exc:
                return self._failed_action(reference, exc.strerror or str(exc))
            return _redirect(f"/?done=deleted&ref={quote(reference)}")
        return self._page("problem.html", "400 Bad Request", kind="bad_action")

    def _failed_action(self, reference: str, detail: str, *, kind: str = "not_saved") -> Answer:
        found = self.front.referral(reference)
        if found is None:
            return self._page("problem.html", "404 Not Found", kind="not_found")
        return self._referral_page("503 Service Unavailable", *found, action_problem=kind, detail=detail)

    def _unlock_page(self, status: str, *, error: str = "") -> Answer:
        return self._page(
            "unlock.html",
            status,
            error=error,
            wrong=error.startswith("wrong passphrase"),  # keyfile's words for a passphrase that does not open it
            folder_problem=self.front.folder_problem or "",
        )

    def _changes(self, query: Mapping[str, str]) -> Answer:
        """The page's script waits here: answered when the desk's generation is not `seen` any more (something
        was filed, marked or deleted, or the pull's outcome changed), else after hold_seconds. Only a number."""
        try:
            seen = int(query.get("seen", ""))
        except ValueError:
            return Answer("400 Bad Request", b'{"error": "seen"}', "application/json")
        generation = self.front.wait_for_change(seen, self.hold_seconds)
        if generation is None:  # enough pages wait already: this one looks every refresh_seconds instead
            return Answer(
                "503 Service Unavailable",
                b'{"error": "busy"}',
                "application/json",
                [("Retry-After", str(self.refresh_seconds))],
            )
        return Answer("200 OK", b'{"generation": %d}' % generation, "application/json")

    def _inbox(self, query: Mapping[str, str]) -> Answer:
        generation = self.front.generation  # before reading: a change meanwhile wakes the page again
        listing = self.front.listing()
        wanted = query.get("state", "")
        search = query.get("q", "").strip()
        counts = {s: 0 for s in State}
        for _, state in listing.referrals:
            counts[state] += 1
        shown = [
            (r, s)
            for r, s in listing.referrals
            if (not wanted or s.value == wanted)
            and (not search or search.casefold() in r.patient.name.casefold() or search.upper() in r.reference)
        ]
        done_ref = query.get("ref", "")
        return self._page(
            "inbox.html",
            "200 OK",
            rows=shown[:MAX_ROWS],
            matching=len(shown),
            total=len(listing.referrals),
            unreadable=listing.unreadable,
            counts=counts,
            wanted=wanted,
            search=search,
            done=query.get("done", ""),
            done_ref=done_ref if referral_file.is_file_safe(done_ref) else "",
            version=_version(
                [(r.reference, s.value, r.patient.name, len(r.notices)) for r, s in listing.referrals],
                listing.unreadable,
            ),
            changed=self.front.texts.gettext("The list of referrals has been updated."),
            generation=generation,
        )

    def _referral(self, reference: str, view: str) -> Answer:
        generation = self.front.generation
        found = self.front.referral(reference)
        if found is None:
            return self._page("problem.html", "404 Not Found", kind="not_found")
        if view == "pdf":
            path = deletion.pdf_path(self.front.outdir, reference)
            if not path.exists():
                return self._page("problem.html", "404 Not Found", kind="no_pdf")
            disposition = ("Content-Disposition", f'attachment; filename="{reference}.pdf"')
            return Answer("200 OK", path.read_bytes(), "application/pdf", [disposition])
        if view == "print":
            return self._page("print.html", "200 OK", referral=found[0], **self._details(found[0]))
        if view == "delete":
            return self._page("delete.html", "200 OK", referral=found[0], state=found[1])
        if view:
            return self._page("problem.html", "404 Not Found", kind="not_found")
        referral, state = found
        return self._referral_page(
            "200 OK",
            referral,
            state,
            version=_version([referral.reference, state.value, [n.notice_id for n in referral.notices]]),
            changed=self.front.texts.gettext("This referral has been updated."),
            generation=generation,
        )

    def _referral_page(self, status: str, referral: Any, state: State, **extra: Any) -> Answer:
        extra.setdefault("action_problem", "")
        extra.setdefault("detail", "")
        return self._page("referral.html", status, referral=referral, state=state, **self._details(referral), **extra)

    def _details(self, referral: Any) -> dict[str, Any]:
        current = consent_is_current(referral)
        return {
            "today": today_in_oslo(datetime.now(UTC)),
            "consent_text": consent_texts(CONSENT_VERSION)[self.front.texts.lang] if current else "",
            "has_pdf": deletion.pdf_path(self.front.outdir, referral.reference).exists(),
        }

    def _page(self, template: str, status: str, **context: Any) -> Answer:
        bare = context.get("kind") in _OUTSIDE  # shown to whoever asks: nothing of the clinic on it
        if context.get("version"):  # a problem with the pull appearing or going is a change too
            context["version"] = _version(context["version"], self.front.status.problem, self.front.status.detail)
        page = self.env.get_template(template).render(
            bare=bare,
            clinic_name="" if bare else self.front.clinic_name,
            unlocked=self.front.session is not None and not bare,
            status=self.front.status,
            csrf=self.guard.csrf,
            every=self.refresh_seconds,
            **{"version": "", "changed": "", "generation": 0, **context},
        )
        return Answer(status, page.encode())


def _version(*shown: object) -> str:
    """A short digest of what a page shows (not of when it was shown): the script compares it to see a change."""
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:16]


def _form(environ: Mapping[str, Any]) -> dict[str, str] | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if length > MAX_FORM:
        return None
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    return {k: v[0] for k, v in fields.items()}
