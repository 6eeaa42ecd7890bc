"""HTTP Message Signatures (RFC 9421) with Ed25519 for the clinic API, via `http-message-signatures`.

Covered: `@method`, `@path`, `@query` and, for requests with a body, `content-digest` (RFC 9530);
signed parameters `created`, `keyid`, `nonce`, `alg` and the tag below. `@authority` is left out on
purpose: behind a TLS-terminating proxy the host the broker sees is not the one the clinic signed.
Freshness (`max_age`) is checked here; nonce uniqueness is the caller's (it needs shared storage).
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import http_sf
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
    algorithms,
)
from http_message_signatures.exceptions import HTTPMessageSignaturesException

TAG = "referral-broker-clinic"
MAX_AGE = datetime.timedelta(minutes=5)
#: How far ahead of the broker's clock `created` may be, and the slack on MAX_AGE (the library's default).
CLOCK_SKEW = HTTPMessageVerifier.max_clock_skew
NONCE_BYTES = 18  # 24 characters of base64url
NONCE_LENGTH = (16, 64)  # the characters a nonce the broker accepts may have, at least and at most
_COVERED = ("@method", "@path", "@query")


class RequestSignatureInvalid(Exception):
    """Missing, malformed, stale, or not made by the key it names."""


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, judging `created` by the clock it is given (the library reads the system's)."""

    def __init__(self, *, now: Callable[[], datetime.datetime], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._now = now

    def validate_created_and_expires(self, sig_input: Any, max_age: datetime.timedelta | None = None) -> None:
        now = self._now()
        skew = self.max_clock_skew
        created = sig_input.params.get("created")
        if created is None:
            raise InvalidSignature('Signature is missing a required "created" parameter')
        at = _instant(created, "created")
        if at > now + skew:
            raise InvalidSignature('Signature "created" parameter is set to a time in the future')
        expires = sig_input.params.get("expires")
        if expires is not None and _instant(expires, "expires") < now - skew:
            raise InvalidSignature('Signature "expires" parameter is set to a time in the past')
        if max_age is not None and at + max_age < now - skew:
            raise InvalidSignature(f"Signature age exceeds maximum allowable age {max_age}")


def _instant(value: object, name: str) -> datetime.datetime:
    """A signature parameter that must be an integer of Unix seconds (RFC 9421 2.3)."""
    if type(value) is not int:
        raise InvalidSignature(f'Parameter "{name}" must be a Structured Field Integer')
    try:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidSignature(f'Malformed "{name}" parameter') from exc


@dataclass
class _Message:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, private: Ed25519PrivateKey | None = None, public: Ed25519PublicKey | None = None):
        self._private = private
        self._public = public

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        assert self._private is not None  # noqa: S101 - a signer is always built with its key
        return self._private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey | None:
        return self._public


def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes | None,
    *,
    key_id: str,
    seed: bytes,
    created: datetime.datetime | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return `headers` plus `Signature-Input`, `Signature` and, with a body, `Content-Digest`; signed as made
    at `created` (now, by this computer's clock, unless given) with `nonce` (a fresh random one unless given:
    only the published test vectors pass one)."""
    message = _Message(method.upper(), url, dict(headers))
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(private=Ed25519PrivateKey.from_private_bytes(seed)),
    )
    signer.sign(
        message,
        key_id=key_id,
        nonce=nonce or secrets.token_urlsafe(NONCE_BYTES),
        tag=TAG,
        covered_component_ids=_COVERED,
        created=created or datetime.datetime.now(datetime.UTC),
        body=body if body else None,
    )
    return message.headers


def signature_key_id(headers: Mapping[str, str]) -> str:
    """The `keyid` a request claims, read before any key is looked up."""
    value = _header(headers, "signature-input")
    try:
        parsed = http_sf.parse(value.encode(), tltype="dictionary")
    except Exception as exc:  # http_sf raises ValueError and others on bad input
        raise RequestSignatureInvalid("Signature-Input is malformed") from exc
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise RequestSignatureInvalid("exactly one signature is expected")
    member: Any = next(iter(parsed.values()))
    params = member[1] if isinstance(member, tuple) and len(member) == 2 else None
    keyid = params.get("keyid") if isinstance(params, dict) else None
    if not isinstance(keyid, str):
        raise RequestSignatureInvalid("Signature-Input names no keyid")
    return keyid


@dataclass(frozen=True)
class VerifiedRequest:
    key_id: str
    nonce: str
    created: int


def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    public_key: bytes,
    now: Callable[[], datetime.datetime] | None = None,
) -> VerifiedRequest:
    """Verify the request against `public_key`; raise RequestSignatureInvalid on any doubt."""
    message = _Message(method.upper(), url, {k.lower(): v for k, v in headers.items()})
    verifier = _Verifier(
        now=now or (lambda: datetime.datetime.now(datetime.UTC)),
        signature_algorithm=algorithms.ED25519,
        key_resolver=_OneKey(public=Ed25519PublicKey.from_public_bytes(public_key)),
    )
    required = [*_COVERED, "content-digest"] if body else list(_COVERED)
    try:
        results = verifier.verify(message, max_age=MAX_AGE, expect_tag=TAG, require_components=required, body=body)
    except (InvalidSignature, HTTPMessageSignaturesException, ValueError) as exc:
        raise RequestSignatureInvalid(str(exc)) from None
    params = results[0].parameters
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or not NONCE_LENGTH[0] <= len(nonce) <= NONCE_LENGTH[1]:
        raise RequestSignatureInvalid("the signature carries no usable nonce")
    return VerifiedRequest(key_id=str(params["keyid"]), nonce=nonce, created=int(params["created"]))


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise RequestSignatureInvalid(f"the request carries no {name} header")
