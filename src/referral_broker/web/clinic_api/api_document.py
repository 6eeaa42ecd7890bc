"""The clinic API as the OpenAPI document states it: its signature scheme, the bodies its handlers read raw,
the envelope inside each inbox item, and every refusal the routes give (decision 0054).

OpenAPI 3.1 has no security scheme for HTTP Message Signatures (RFC 9421), so the two headers that carry one
are declared as API keys, required together, and the description states the profile; `Content-Digest`
(RFC 9530) is a required header of every request with a body. `docs/protocol.md` is the normative text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    Parameter,
    Schema,
    SecurityRequirement,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType

from referral_broker.services.clinic_inbox import MAX_PAGE
from referral_broker.web.api_document import (
    ErrorBody,
    IncidentBody,
    InvalidRequestBody,
    inline_json_schema,
    json_request_body,
)
from referral_protocol.enrolment import (
    AckRequest,
    InboxPage,
    KeyRequest,
    RefusalRequest,
)
from referral_protocol.envelope import ENVELOPE_FORMAT, EnvelopeBody, SignedEnvelope
from referral_protocol.request_signature import MAX_AGE, TAG

SIGNATURE = "RequestSignature"
SIGNATURE_INPUT = "RequestSignatureInput"

_EXAMPLE = (
    'Signature-Input: sig1=("@method" "@path" "@query" "content-digest");created=1796631941;keyid="0123456789abcdef"'
    f';alg="ed25519";nonce="fZw97c3oUOtPQw1keMcrHAd_";tag="{TAG}"\n'
    "Signature: sig1=:bf9mT2WkFqNYytLLfxhQKBzpjbbt383EEUU7eHAGftHivmIH8DZ+RwMxUbRzqHDR/Smq072as3KBifEw6wSTBg==:\n"
    "Content-Digest: sha-256=:RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=:"
)

_PROFILE = f"""HTTP Message Signatures (RFC 9421) with Ed25519, made by an active signing key of an active clinic.
OpenAPI has no scheme of its own for them: `Signature` and `Signature-Input` are declared as two API-key
headers that every clinic request carries together, and `Content-Digest` (RFC 9530) as a header of every
request with a body. For example (the shape only; the values are not a valid signature of anything):

```
{_EXAMPLE}
```

- `Signature-Input`: exactly one signature, under any label (`referral-clinic` uses `pyhms`).
  Covered components: `"@method" "@path" "@query"`, and `"content-digest"` when the request has a body.
  `@authority` is not covered (a TLS-terminating proxy may change it).
- Parameters: `created` (Unix seconds; refused when older than {int(MAX_AGE.total_seconds())} seconds or more than
  a few seconds ahead of the broker's clock), `keyid` (the key id of the clinic's signing key: the first 16 hex
  digits of SHA-256 of its 32-byte Ed25519 public key), `nonce` (16–64 characters, never used twice by the key),
  `alg="ed25519"` and `tag="{TAG}"`.
- `Signature`: under the same label, the base64 Ed25519 signature over the RFC 9421 signature base.
- `Content-Digest`: `sha-256=:<base64>:` (or `sha-512`) of the exact body bytes.

Refusals: no signature, a malformed or stale one, one by an unknown key, one that does not verify, or a replayed
nonce: 401. A valid signature by a key not yet verified (the answer names the fingerprint to confirm with the
broker's operator), a retired or revoked key, or a suspended clinic: 403. `docs/protocol.md` is the normative
text, with test vectors."""

SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    SIGNATURE: SecurityScheme(type="apiKey", name="Signature", security_scheme_in="header", description=_PROFILE),
    SIGNATURE_INPUT: SecurityScheme(
        type="apiKey",
        name="Signature-Input",
        security_scheme_in="header",
        description=f"The covered components and parameters of the request's signature; see `{SIGNATURE}`.",
    ),
}

#: Both headers, together, on every clinic route.
SIGNED: list[SecurityRequirement] = [{SIGNATURE: [], SIGNATURE_INPUT: []}]

_CONTENT_DIGEST = Parameter(
    name="Content-Digest",
    param_in="header",
    required=True,
    description="RFC 9530 digest of the exact body bytes, covered by the signature: `sha-256=:<base64>:` or "
    "`sha-512=:<base64>:`.",
    schema=Schema(type=OpenAPIType.STRING, pattern=r"^sha-(256|512)=:[A-Za-z0-9+/]+={0,2}:$"),
)

#: `wait` is held by the inbox route once long-polling is in (issue 19); until then the broker ignores it and
#: answers at once, which the description allows.
_WAIT = Parameter(
    name="wait",
    param_in="query",
    required=False,
    description="Long-polling: when nothing waits, hold the answer until something arrives for this clinic or "
    "`wait` seconds pass (then the usual empty page). 0, the default, answers at once. The signature's `created` "
    "is checked when the request arrives.",
    schema=Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=25, default=0),
)

_LIMIT = Parameter(
    name="limit",
    param_in="query",
    required=False,
    description=f"Items per page; a number below 1 is taken as 1, above {MAX_PAGE} as {MAX_PAGE}.",
    schema=Schema(type=OpenAPIType.INTEGER, default=100),
)


def _envelope_schema() -> dict[str, Any]:
    """`InboxItem.envelope`: base64 of the signed envelope's JSON, whose `body` is base64 of JSON again."""
    body = inline_json_schema(EnvelopeBody)
    body["description"] = (
        "`kind` is `referral` or a notice's kind; `clinic` the addressee's slug. `recipients` holds one sealed box "
        "(libsodium `crypto_box_seal`, base64) per encryption key of the clinic, named by its key id; each opens to "
        "the padded payload."
    )
    body["properties"]["recipients"]["items"]["properties"]["key_id"]["description"] = (
        "Key id of the clinic's encryption key: 16 hex digits of SHA-256 of its X25519 public key."
    )
    envelope = inline_json_schema(SignedEnvelope)
    envelope["description"] = (
        f"`format` is `{ENVELOPE_FORMAT}`; `signer` is the key id of the broker's signing key (pin it); "
        "`signature` is the broker's Ed25519 signature (base64) over the domain tag "
        "`referral-broker envelope v1` and a zero byte, followed by the exact bytes `body` decodes to."
    )
    envelope["properties"]["body"] = {
        "type": "string",
        "contentEncoding": "base64",
        "contentMediaType": "application/json",
        "contentSchema": body,
        "description": "Base64 of the envelope body's JSON, exactly as signed.",
    }
    return {
        "type": "string",
        "contentEncoding": "base64",
        "contentMediaType": "application/json",
        "contentSchema": envelope,
        "description": "Base64 of the signed envelope's JSON. Verify the broker's signature, then open the box "
        "named by one of your key ids; the payload names the clinic and delivery again.",
    }


def inbox_page_schema() -> dict[str, Any]:
    page = inline_json_schema(InboxPage)
    item = page["properties"]["items"]["items"]
    item["properties"]["envelope"] = _envelope_schema()
    item["properties"]["delivery_id"]["description"] = "What to acknowledge (or refuse) once the envelope is filed."
    page["properties"]["next"]["description"] = "Where the next page begins: pass it as `after`."
    return page


@dataclass
class InboxOperation(Operation):
    """`limit`, `after` and `wait` as the route reads them, and the page with the envelope's format."""

    def __post_init__(self) -> None:
        after = Parameter(
            name="after",
            param_in="query",
            required=False,
            description="`start`, or a page's `next`: read on from there without acknowledging in between.",
            schema=cast(Schema, inline_json_schema(InboxPage)["properties"]["next"]["anyOf"][0]),
        )
        ours = {p.name: p for p in (_LIMIT, after, _WAIT)}
        self.parameters = [
            *(p for p in self.parameters or [] if not (isinstance(p, Parameter) and p.name in ours)),
            *ours.values(),
        ]
        if self.responses and "200" in self.responses:
            self.responses["200"] = OpenAPIResponse(
                description="What waits for the calling clinic, referrals oldest first, then notices",
                content={"application/json": OpenAPIMediaType(schema=cast(Schema, inbox_page_schema()))},
            )


_DELIVERY_ID = "0193a6f2-7c1e-7d44-9b1a-3f0c2e8d5a61"


def _with_body(operation: Operation, type_: Any, description: str, example: dict[str, Any] | None = None) -> None:
    schema = inline_json_schema(type_)
    if example is not None:
        schema["examples"] = [example]
    operation.request_body = json_request_body(schema, description)
    operation.parameters = [*(operation.parameters or []), _CONTENT_DIGEST]


@dataclass
class AckOperation(Operation):
    def __post_init__(self) -> None:
        _with_body(
            self,
            AckRequest,
            "Delivery ids (from inbox items) filed safely; acknowledging again is harmless.",
            {"delivery_ids": [_DELIVERY_ID]},
        )


@dataclass
class RefuseOperation(Operation):
    def __post_init__(self) -> None:
        _with_body(
            self,
            RefusalRequest,
            "Envelopes no machine of this clinic can ever open correctly, with why.",
            {"refusals": [{"delivery_id": _DELIVERY_ID, "reason": "does_not_open"}]},
        )


@dataclass
class KeyRequestOperation(Operation):
    def __post_init__(self) -> None:
        _with_body(
            self,
            KeyRequest,
            "A key request (`format` `referral-clinic/key-request/v1`, byte fields base64) endorsed by an active "
            "signing key of the calling clinic.",
        )


def _answer(body: Any, description: str) -> ResponseSpec:
    """A documented answer; no examples made up from random strings (they would read as real refusals)."""
    return ResponseSpec(body, description=description, generate_examples=False)


_UNREADABLE = (
    "A zero byte, invalid UTF-8 or a control character in the path, a query parameter or a header "
    "(the field is `path`, `query …` or `header …`)"
)


def _refusals(*, body: bool, extra: dict[int, ResponseSpec] | None = None) -> dict[int, ResponseSpec]:
    """What every signed route may answer besides success."""
    refusals = {
        400: _answer(
            InvalidRequestBody,
            (_UNREADABLE + "; or a body that is not JSON (field `body`)") if body else _UNREADABLE,
        ),
        401: _answer(ErrorBody, "No valid request signature, or a replayed one; `error` says which"),
        403: _answer(
            ErrorBody,
            "Signed by a key not yet verified (verify its fingerprint with the broker's operator), a "
            "retired or revoked key, or for a suspended clinic",
        ),
        500: _answer(IncidentBody, "A failure on the broker's side; nothing sent was kept"),
    }
    if body:
        refusals[408] = _answer(ErrorBody, "The body did not arrive in time")
        refusals[413] = _answer(ErrorBody, "The body is larger than REFERRAL_BROKER_MAX_BODY_BYTES")
    return dict(sorted({**refusals, **(extra or {})}.items()))


INBOX_RESPONSES = _refusals(
    body=False,
    extra={
        400: _answer(
            ErrorBody | InvalidRequestBody,
            _UNREADABLE + "; `limit` not an integer; or `wait` not a whole number 0–25",
        ),
        422: _answer(InvalidRequestBody, "`after` is not a place in the inbox (field `after`)"),
        429: _answer(ErrorBody, "This clinic already has several inbox requests waiting; see Retry-After"),
        503: _answer(ErrorBody, "This server holds as many waiting requests as it can; see Retry-After"),
    },
)
STATUS_RESPONSES = _refusals(body=False)
BODY_RESPONSES = _refusals(
    body=True,
    extra={422: _answer(InvalidRequestBody, "Every wrong field of the body, each with a code")},
)
KEY_REQUEST_RESPONSES = _refusals(
    body=True,
    extra={
        400: _answer(
            ErrorBody | InvalidRequestBody,
            _UNREADABLE + "; or a key request refused, `error` saying why (not readable, wrong proof or "
            "endorsement, for another clinic, a key already known, a suspended clinic)",
        ),
    },
)
