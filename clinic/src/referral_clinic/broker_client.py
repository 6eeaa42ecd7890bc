"""The clinic's side of the clinic API: every request signed (RFC 9421) with the clinic's Ed25519 key."""

from __future__ import annotations

import functools
import ssl
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import httpx
import msgspec

from referral_protocol.encoding import key_id
from referral_protocol.enrolment import (
    AckRequest,
    AckResult,
    ClinicStatusReport,
    InboxPage,
    KeyRequestAnswer,
    Refusal,
    RefusalRequest,
    RefusalResult,
)
from referral_protocol.request_signature import MAX_AGE, sign_request
from referral_protocol.validation import DECODE_ERRORS

T = TypeVar("T")

INBOX_PATH = "/api/v1/clinic/inbox"
ACK_PATH = "/api/v1/clinic/inbox/ack"
REFUSE_PATH = "/api/v1/clinic/inbox/refuse"
STATUS_PATH = "/api/v1/clinic/status"
KEYS_PATH = "/api/v1/clinic/keys"
TIMEOUT_SECONDS = 30.0
#: A signature made this far ahead of the broker's clock is refused (the verifier's own tolerance), as is one
#: older than MAX_AGE when it arrives: a 401 with the clock that far off is put down to the clock.
CLOCK_AHEAD_FROM = timedelta(seconds=5)
CLOCK_BEHIND_FROM = MAX_AGE - timedelta(seconds=30)


def _tool_version() -> str:
    try:
        return version("referral-broker")
    except PackageNotFoundError:
        return "0"


USER_AGENT = f"referral-clinic/{_tool_version()}"

_inbox_decoder = msgspec.json.Decoder(InboxPage)
_ack_decoder = msgspec.json.Decoder(AckResult)
_refusal_decoder = msgspec.json.Decoder(RefusalResult)
_status_decoder = msgspec.json.Decoder(ClinicStatusReport)
_key_answer_decoder = msgspec.json.Decoder(KeyRequestAnswer)
_encoder = msgspec.json.Encoder()


class BrokerUnavailable(Exception):
    """The broker could not be reached, or answered something other than what the API promises."""


class BrokerRefusedClinic(Exception):
    """The broker answered 401/403: it does not (yet) accept this clinic's signing key."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(f"the broker refused this clinic's signed request (HTTP {status})" + detail)
        self.status = status


class ClockOff(BrokerRefusedClinic):
    """The broker refused a signed request, and its `Date` shows this computer's clock is off: the signature's
    time was outside what the broker accepts (MAX_AGE). Nothing is wrong with the key."""

    def __init__(self, status: int, off_by: timedelta) -> None:
        self.status = status
        self.off_by = off_by  # this computer's clock minus the broker's
        Exception.__init__(
            self,
            f"this computer's clock is {_duration(abs(off_by))} {'fast' if off_by > timedelta(0) else 'slow'}, "
            f"so the broker refuses its requests (they may be at most {_duration(MAX_AGE)} off): set the "
            "computer's date and time right, or better turn on automatic time (Windows: Settings > Time & "
            "language > Set time automatically; macOS: System Settings > General > Date & Time; Linux: "
            "`timedatectl set-ntp true`), then pull again",
        )


def local_clock() -> datetime:
    """This computer's clock: what its requests are signed with (a test moves it)."""
    return datetime.now(UTC)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's own default context (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), made once a process:
    making it reads the whole bundle, which took 50-100 ms a client on a busy machine, twice a `watch` cycle
    (the long poll's client and the pull's), and was the largest part of the cycle (decision 0138)."""
    return httpx.create_ssl_context()


class BrokerRefusedRequest(Exception):
    """The broker answered 400 to a request it understood and refused; the message is the broker's."""


class BrokerClient:
    """Talks to one broker as one clinic. Pass `transport` to serve it from memory in tests."""

    def __init__(
        self,
        base_url: str,
        *,
        signing_seed: bytes,
        signing_public: bytes,
        transport: httpx.BaseTransport | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._seed = signing_seed
        self._key_id = key_id(signing_public)
        self._timeout = timeout
        # Redirects are not followed: a signature covers one path, and a moved broker should be re-configured.
        self._http = httpx.Client(
            transport=transport,
            timeout=timeout,
            headers={"user-agent": USER_AGENT},
            follow_redirects=False,
            verify=_tls_context() if transport is None else True,
        )

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def fetch_inbox(self, limit: int, after: str | None = None, *, wait: int = 0) -> InboxPage:
        """A page of the inbox; with `after` (`start`, then a page's `next`), the page that follows it. With
        `wait` (seconds) the broker holds an empty answer until something arrives or the time is over."""
        query = f"?limit={limit}" if after is None else f"?limit={limit}&after={quote(after, safe='')}"
        if wait:
            query += f"&wait={wait}"
        content = self._send("GET", INBOX_PATH + query, b"", timeout=self._timeout + wait if wait else None)
        return _decoded(_inbox_decoder, content, "a malformed inbox page")

    def acknowledge(self, delivery_ids: list[str]) -> AckResult:
        content = self._send("POST", ACK_PATH, _encoder.encode(AckRequest(delivery_ids=delivery_ids)))
        return _decoded(_ack_decoder, content, "a malformed acknowledgement answer")

    def refuse(self, refusals: list[Refusal]) -> RefusalResult:
        """Report envelopes that can never be opened correctly here, so they leave the inbox."""
        content = self._send("POST", REFUSE_PATH, _encoder.encode(RefusalRequest(refusals=refusals)))
        return _decoded(_refusal_decoder, content, "a malformed refusal answer")

    def status(self) -> ClinicStatusReport:
        content = self._send("GET", STATUS_PATH, b"")
        return _decoded(_status_decoder, content, "a malformed status")

    def request_key(self, key_request: bytes) -> KeyRequestAnswer:
        content = self._send("POST", KEYS_PATH, key_request)
        return _decoded(_key_answer_decoder, content, "a malformed answer to the key request")

    def _send(self, method: str, path_and_query: str, body: bytes, timeout: float | None = None) -> bytes:
        url = httpx.URL(self._base + path_and_query)
        headers = {"accept": "application/json"}
        if body:
            headers["content-type"] = "application/json"
        now = local_clock()
        signed = sign_request(method, str(url), headers, body, key_id=self._key_id, seed=self._seed, created=now)
        try:
            response = self._http.request(
                method, url, headers=signed, content=body or None, timeout=timeout or self._timeout
            )
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"cannot reach the broker at {self._base}: {_describe(exc)}") from None
        if response.status_code in (401, 403):
            off_by = _clock_off_by(response, now) if response.status_code == 401 else None
            if off_by is not None:
                raise ClockOff(response.status_code, off_by)
            raise BrokerRefusedClinic(response.status_code, _broker_says(response))
        if response.status_code == 400 and method == "POST" and path_and_query == KEYS_PATH:
            raise BrokerRefusedRequest(f"the broker refused the key request{_broker_says(response) or ''}")
        if not response.is_success:
            raise BrokerUnavailable(
                f"the broker answered HTTP {response.status_code} to {method} {url.path}; try again later"
            )
        return response.content


def _clock_off_by(response: httpx.Response, sent_at: datetime) -> timedelta | None:
    """How far this computer's clock is from the broker's, by the answer's `Date` (whole seconds), when far
    enough to be why a signed request was refused; else None."""
    try:
        broker_time = parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    if broker_time.tzinfo is None:
        return None
    off_by = sent_at - broker_time
    return off_by if off_by > CLOCK_AHEAD_FROM or off_by < -CLOCK_BEHIND_FROM else None


def _duration(span: timedelta) -> str:
    seconds = round(span.total_seconds())
    if seconds < 90:
        return f"{seconds} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds / 3600)} hours" if seconds < 48 * 3600 else f"{round(seconds / 86400)} days"


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _broker_says(response: httpx.Response) -> str:
    """The broker's own explanation of a refusal, made safe to print, or nothing."""
    try:
        detail = msgspec.json.decode(response.content).get("error")
    except DECODE_ERRORS:
        return ""
    except AttributeError:  # valid JSON, but not an object
        return ""
    if not isinstance(detail, str) or not detail:
        return ""
    cleaned = "".join(c if c.isprintable() else "?" for c in detail)[:300]
    return f": {cleaned}"


def _decoded(decoder: msgspec.json.Decoder[T], content: bytes, what: str) -> T:
    """The broker's answer as its type; anything else is the broker's fault, said as `what` it sent."""
    try:
        return decoder.decode(content)
    except DECODE_ERRORS as exc:
        raise BrokerUnavailable(f"the broker sent {what}: {exc}") from None
