"""JSON Schemas (draft 2020-12) of what crosses the wire, generated from the protocol's msgspec types.

The files under `schemas/` are shipped with this package and served by the broker at
`/protocol/schemas/<name>.schema.json`. They are made by `generate()` (`python -m devstack.protocol_schemas`
writes them) and a test checks the shipped files equal what generation gives, so they cannot drift from
the types. Each file stands alone (its own `$defs`); base64 fields that carry JSON name the schema of what
they carry with `contentMediaType` and `contentSchema` (annotations: a validator does not decode them).

`$id` in a shipped file is the path (`/protocol/schemas/<name>.schema.json`); the broker serves each file
with `$id` made absolute under its public URL (`with_base`).
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import msgspec

from referral_protocol.enrolment import (
    ENROLLMENT_FORMAT,
    KEY_REQUEST_FORMAT,
    AckRequest,
    AckResult,
    ClinicStatusReport,
    Enrollment,
    InboxItem,
    InboxPage,
    KeyRequest,
    KeyRequestAnswer,
    RefusalRequest,
    RefusalResult,
)
from referral_protocol.envelope import ENVELOPE_FORMAT, EnvelopeBody, SignedEnvelope
from referral_protocol.key_change import KEY_CHANGE_FORMAT, KEY_CHANGE_KIND, KeyChangeAction, KeyChangeStatement
from referral_protocol.notice import NOTICE_PAYLOAD_FORMAT, NoticeKind, NoticePayload
from referral_protocol.referral import REFERRAL_PAYLOAD_FORMAT, ReferralPayload
from referral_protocol.webhook import WEBHOOK_TYPES, WebhookBody

DIALECT = "https://json-schema.org/draft/2020-12/schema"
PATH = "/protocol/schemas/"

_KEY_ID = {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "a key id: 16 hex digits of SHA-256"}
_KEY_32 = {"contentEncoding": "base64", "description": "a 32-byte public key, base64 (RFC 4648 §4, padded)"}
_SIGNATURE = {"contentEncoding": "base64", "description": "a 64-byte Ed25519 signature, base64"}
_UUID = {"pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
ENVELOPE_KINDS = ("referral", *(k.value for k in NoticeKind), KEY_CHANGE_KIND)


def schema_id(name: str) -> str:
    return f"{PATH}{name}.schema.json"


def _base(name: str, type_: Any, title: str, description: str) -> dict[str, Any]:
    (top,), defs = msgspec.json.schema_components([type_], ref_template="#/$defs/{name}")
    _date_times(type_, defs)
    return {
        "$schema": DIALECT,
        "$id": schema_id(name),
        "title": title,
        "description": description,
        **top,
        "$defs": defs,
    }


def _date_times(type_: Any, defs: dict[str, Any]) -> None:
    """Mark datetime fields `format: date-time` (RFC 3339), which msgspec's schemas leave out."""
    seen: set[type] = set()

    def visit(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType) and info.cls not in seen:
            seen.add(info.cls)
            props = defs[info.cls.__name__]["properties"]
            for f in info.fields:
                if isinstance(f.type, msgspec.inspect.DateTimeType):
                    props[f.encode_name]["format"] = "date-time"
                elif isinstance(f.type, msgspec.inspect.UnionType):
                    for i, member in enumerate(f.type.types):
                        if isinstance(member, msgspec.inspect.DateTimeType):
                            props[f.encode_name]["anyOf"][i]["format"] = "date-time"
                visit(f.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            for member in info.types:
                visit(member)
        elif isinstance(info, msgspec.inspect.ListType):
            visit(info.item_type)

    visit(msgspec.inspect.type_info(type_))


def _props(schema: dict[str, Any], struct: str) -> dict[str, Any]:
    props: dict[str, Any] = schema["$defs"][struct]["properties"]
    return props


def _const(schema: dict[str, Any], struct: str, field: str, value: str) -> None:
    _props(schema, struct)[field] = {"type": "string", "const": value}


def _envelope_body() -> dict[str, Any]:
    s = _base(
        "envelope-body-v1",
        EnvelopeBody,
        "Envelope body, v1",
        "The signed body of an envelope (the JSON whose base64 is the envelope's `body`).",
    )
    p = _props(s, "EnvelopeBody")
    p["kind"] = {"type": "string", "enum": list(ENVELOPE_KINDS)}
    p["delivery_id"] = {"type": "string", **_UUID}
    rp = _props(s, "Recipient")
    rp["key_id"] = copy.deepcopy(_KEY_ID)
    rp["box"] |= {"description": "a sealed box (libsodium crypto_box_seal) of the padded payload, base64"}
    return s


def _envelope() -> dict[str, Any]:
    s = _base(
        "envelope-v1",
        SignedEnvelope,
        "Signed envelope, v1",
        "A sealed, signed envelope: compact JSON, fields in this order: format, signer, body, signature.",
    )
    _const(s, "SignedEnvelope", "format", ENVELOPE_FORMAT)
    p = _props(s, "SignedEnvelope")
    p["signer"] = copy.deepcopy(_KEY_ID)
    body = _envelope_body()
    p["body"] |= {
        "contentMediaType": "application/json",
        "contentSchema": {k: v for k, v in body.items() if k not in ("$schema", "$id")},
    }
    p["signature"] |= _SIGNATURE
    return s


def _inbox_item_defs(s: dict[str, Any]) -> None:
    envelope = _envelope()
    p = _props(s, "InboxItem")
    p["envelope"] |= {
        "contentMediaType": "application/json",
        "contentSchema": {k: v for k, v in envelope.items() if k not in ("$schema", "$id")},
    }


def _notice(kind: NoticeKind) -> dict[str, Any]:
    s = _base(
        f"notice-{kind.value}-v1",
        NoticePayload,
        f"Notice payload, v1, kind {kind.value}",
        f"The plaintext of a {kind.value} notice envelope (format {NOTICE_PAYLOAD_FORMAT}).",
    )
    _const(s, "NoticePayload", "format", NOTICE_PAYLOAD_FORMAT)
    _const(s, "NoticePayload", "kind", kind.value)
    p = _props(s, "NoticePayload")
    p["notice_id"] = {"type": "string", **_UUID}
    p["delivery_id"] = {"type": "string", **_UUID}
    required: list[str] = s["$defs"]["NoticePayload"]["required"]
    if kind is NoticeKind.CORRECTION:
        p["patient"] = {"$ref": "#/$defs/Patient"}
        required.append("patient")
    else:
        p["patient"] = {"type": "null"}
    return s


def _referral() -> dict[str, Any]:
    s = _base(
        "referral-payload-v1",
        ReferralPayload,
        "Referral payload, v1",
        f"The plaintext sealed in a referral envelope (format {REFERRAL_PAYLOAD_FORMAT}).",
    )
    _const(s, "ReferralPayload", "format", REFERRAL_PAYLOAD_FORMAT)
    _props(s, "ReferralPayload")["delivery_id"] = {"type": "string", **_UUID}
    return s


def _inbox_page() -> dict[str, Any]:
    s = _base(
        "inbox-page",
        InboxPage,
        "Inbox page",
        "The answer to GET /api/v1/clinic/inbox: what waits for the calling clinic, oldest first.",
    )
    _inbox_item_defs(s)
    return s


def _inbox_item() -> dict[str, Any]:
    s = _base("inbox-item", InboxItem, "Inbox item", "One item of an inbox page: an id and a base64 envelope.")
    _inbox_item_defs(s)
    return s


def _enrollment() -> dict[str, Any]:
    s = _base(
        "enrollment-v1",
        Enrollment,
        "Enrolment file, v1",
        "A clinic's enrolment.json: its public keys, self-signed with its signing key.",
    )
    _const(s, "Enrollment", "format", ENROLLMENT_FORMAT)
    p = _props(s, "Enrollment")
    p["encryption_key"] |= _KEY_32
    p["signing_key"] |= _KEY_32
    p["proof"] |= _SIGNATURE
    return s


def _key_request() -> dict[str, Any]:
    s = _base(
        "key-request-v1",
        KeyRequest,
        "Key request, v1",
        "A new key for an enrolled clinic (key-request.json, or the body of POST /api/v1/clinic/keys).",
    )
    _const(s, "KeyRequest", "format", KEY_REQUEST_FORMAT)
    p = _props(s, "KeyRequest")
    p["encryption_key"] |= _KEY_32
    p["signing_key"]["anyOf"][0] |= _KEY_32
    p["replaces"]["anyOf"][0] = copy.deepcopy(_KEY_ID)
    p["endorsed_by"]["anyOf"][0] = copy.deepcopy(_KEY_ID)
    p["proof"]["anyOf"][0] |= _SIGNATURE
    p["endorsement"]["anyOf"][0] |= _SIGNATURE
    return s


def _webhook() -> dict[str, Any]:
    s = _base(
        "webhook-v1",
        WebhookBody,
        "Webhook body, v1",
        "The JSON body the broker POSTs to a clinic's webhook; it says only that something waits.",
    )
    _props(s, "WebhookBody")["type"] = {"type": "string", "enum": list(WEBHOOK_TYPES)}
    return s


def _key_change() -> dict[str, Any]:
    s = _base(
        "key-change-v1",
        KeyChangeStatement,
        "Broker key-change statement, v1",
        f"The plaintext of a {KEY_CHANGE_KIND} envelope (format {KEY_CHANGE_FORMAT}): the broker announces a new "
        "signing key (signed by the old one) or retires the old one (signed by the new one).",
    )
    _const(s, "KeyChangeStatement", "format", KEY_CHANGE_FORMAT)
    p = _props(s, "KeyChangeStatement")
    p["action"] = {"type": "string", "enum": [a.value for a in KeyChangeAction]}
    p["statement_id"] = {"type": "string", **_UUID}
    p["old_key"] |= _KEY_32
    p["new_key"] |= _KEY_32
    p["new_key_fingerprint"] = {
        "type": "string",
        "pattern": "^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$",
        "description": "base32 of the first 20 bytes of SHA-256('referral-broker broker key v1' 0x00 new_key), "
        "in groups of four",
    }
    return s


def _plain(name: str, type_: Any, title: str, description: str) -> dict[str, Any]:
    return _base(name, type_, title, description)


def generate() -> dict[str, dict[str, Any]]:
    """Every schema, by name, as the types make it."""
    schemas = [
        _referral(),
        *(_notice(k) for k in NoticeKind),
        _envelope(),
        _envelope_body(),
        _inbox_page(),
        _inbox_item(),
        _plain("ack-request", AckRequest, "Acknowledgement", "The body of POST /api/v1/clinic/inbox/ack."),
        _plain("ack-result", AckResult, "Acknowledgement answer", "The answer to POST /api/v1/clinic/inbox/ack."),
        _plain("refusal-request", RefusalRequest, "Refusal", "The body of POST /api/v1/clinic/inbox/refuse."),
        _plain("refusal-result", RefusalResult, "Refusal answer", "The answer to POST /api/v1/clinic/inbox/refuse."),
        _plain("clinic-status", ClinicStatusReport, "Clinic status", "The answer to GET /api/v1/clinic/status."),
        _enrollment(),
        _key_request(),
        _plain("key-request-answer", KeyRequestAnswer, "Key request answer", "The answer to POST /api/v1/clinic/keys."),
        _webhook(),
        _key_change(),
    ]
    return {s["$id"].removeprefix(PATH).removesuffix(".schema.json"): s for s in schemas}


#: The names of the shipped schemas (a test checks this is what `generate()` makes).
NAMES: tuple[str, ...] = (
    "ack-request",
    "ack-result",
    "clinic-status",
    "enrollment-v1",
    "envelope-body-v1",
    "envelope-v1",
    "inbox-item",
    "inbox-page",
    "key-change-v1",
    "key-request-answer",
    "key-request-v1",
    "notice-correction-v1",
    "notice-erasure-v1",
    "notice-withdrawal-v1",
    "referral-payload-v1",
    "refusal-request",
    "refusal-result",
    "webhook-v1",
)


def encode(schema: dict[str, Any]) -> bytes:
    """The bytes of a schema file: two-space indented JSON, keys in the order made, one final newline."""
    return (json.dumps(schema, indent=2, ensure_ascii=False) + "\n").encode()


def shipped(name: str) -> bytes:
    """The schema file `name` as shipped in this package; KeyError if there is none by that name."""
    if name not in NAMES:
        raise KeyError(name)
    return resources.files("referral_protocol").joinpath("schemas", f"{name}.schema.json").read_bytes()


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(shipped(name))
    return loaded


def with_base(name: str, public_url: str) -> bytes:
    """The shipped schema `name` with its `$id` absolute under `public_url`, as the broker serves it."""
    schema = load(name)
    schema["$id"] = public_url.rstrip("/") + schema["$id"]
    return encode(schema)
