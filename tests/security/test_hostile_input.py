"""Hostile input to every decoder (security.md controls 9 and 16): random and mutated inputs give the
decoder's own clear error, never another exception (a crash, a 500, a traceback), and never a wrong
acceptance — what a decoder accepts fits the JSON Schema msgspec derives from the same type (the one
the OpenAPI document publishes for the referral).

Covered elsewhere, not repeated here: any flipped bit of an envelope refused
(tests/test_crypto_envelopes.py::test_any_flipped_byte_is_refused, and through the clinic tool in
clinic/tests/test_envelope_checks.py), a payload for clinic B re-sealed to A refused
(clinic/tests/test_envelope_checks.py::test_payload_for_other_clinic_resealed_to_us_is_refused),
replays skipped (clinic/tests/test_pull.py::test_replayed_envelope_is_skipped), padding round trips
(tests/test_crypto_envelopes.py).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pkgutil
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import referral_broker
import referral_clinic
import referral_protocol
from referral_protocol import envelope, keyfile
from referral_protocol.clinic_identity import (
    ClinicSecrets,
    EnrollmentInvalid,
    check_enrollment,
    check_key_request,
    make_enrollment,
)
from referral_protocol.enrolment import AckRequest, RefusalRequest
from referral_protocol.errors import EnvelopeRejected, InvalidRequest, KeyFileError
from referral_protocol.padding import BUCKETS, pad, unpad
from referral_protocol.referral import ReferralRequest
from referral_protocol.validation import decode_json
from tests.conftest import referral_json

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: The request bodies the HTTP API decodes (web/patient/api.py, web/clinic_api/), each with a good example.
API_BODIES: dict[type[Any], dict[str, Any]] = {
    ReferralRequest: referral_json(["klinikk-a", "klinikk-b"]),
    AckRequest: {"delivery_ids": ["0b1c6f0e-3c56-4d3e-9d76-3e8e4c1b2a10"]},
    RefusalRequest: {"refusals": [{"delivery_id": "0b1c6f0e-3c56-4d3e-9d76-3e8e4c1b2a10", "reason": "does_not_open"}]},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"[" * 100_000,
            b'{"a":' * 50_000,
            b'{"format":' + b"[" * 100_000,
            b'"\xff"',
            b'{"format": "\xff", "slug": "\xc3\x28"}',
            b"\xef\xbb\xbf{}",
            b"\x00",
            b"",
            b"null",
            b"1e999",
        ]
    ),
)


def _validator(type_: type[Any]) -> Any:
    return jsonschema_rs.validator_for(msgspec.json.schema(type_))


def _mutations(example: dict[str, Any]) -> st.SearchStrategy[Any]:
    """The example with one path deleted, replaced by random JSON, or given an unknown sibling."""

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        found = [prefix]
        if isinstance(node, dict):
            for k, v in node.items():
                found += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                found += paths(v, (*prefix, i))
        return found

    def apply(choice: tuple[tuple[Any, ...], str, Any]) -> Any:
        path, how, value = choice
        copy = msgspec.json.decode(msgspec.json.encode(example))
        if not path:
            return value
        parent = copy
        for step in path[:-1]:
            parent = parent[step]
        if how == "delete":
            del parent[path[-1]]
        elif how == "replace":
            parent[path[-1]] = value
        elif isinstance(parent, dict):
            parent[f"unknown_{value!r}"[:20]] = value
        return copy

    return st.tuples(st.sampled_from(paths(example)), st.sampled_from(["delete", "replace", "add"]), json_values).map(
        apply
    )


@pytest.mark.parametrize("type_", list(API_BODIES), ids=lambda t: t.__name__)
@FAST
@given(data=st.data())
def test_api_bodies_give_named_field_errors_or_a_value_that_fits_the_schema(type_: type[Any], data: Any) -> None:
    body = data.draw(
        st.one_of(
            hostile_bytes,
            json_values.map(msgspec.json.encode),
            _mutations(API_BODIES[type_]).map(msgspec.json.encode),
        )
    )
    try:
        value = decode_json(body, type_)
    except InvalidRequest as refused:
        assert refused.errors and all(e.field and e.code and e.message for e in refused.errors)
        return
    assert _validator(type_).is_valid(msgspec.json.decode(body)), body  # accepted ⇒ fits the published schema
    assert msgspec.json.decode(msgspec.json.encode(value), type=type_) == value


@pytest.mark.parametrize("type_", list(API_BODIES), ids=lambda t: t.__name__)
def test_an_unknown_field_anywhere_is_refused_by_name(type_: type[Any]) -> None:
    example = API_BODIES[type_]
    for path, body in _unknown_field_everywhere(example):
        with pytest.raises(InvalidRequest) as refused:
            decode_json(msgspec.json.encode(body), type_)
        [error] = refused.value.errors
        # Named as the field itself, or (inside a list of objects) as the element, with the field in the message.
        assert error.field.endswith("sneaky") or "sneaky" in error.message, (path, error)


def _unknown_field_everywhere(example: dict[str, Any]) -> list[tuple[str, Any]]:
    found = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            copy = msgspec.json.decode(msgspec.json.encode(example))
            target = copy
            for step in [s for s in path.split("/") if s]:
                target = target[int(step) if step.isdigit() else step]
            target["sneaky"] = 1
            found.append((path, copy))
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(example, "")
    return found


def _all_structs() -> list[type[msgspec.Struct]]:
    """Every msgspec type of ours: requests, payloads, envelopes, file formats, job-free by design."""
    found: dict[str, type[msgspec.Struct]] = {}
    # The protocol and the clinic's program whole; of the broker, its own types (its web layer's are swept
    # through the routes).
    modules = [
        info.name
        for package in (referral_protocol, referral_clinic, referral_broker)
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
        if package is not referral_broker or info.name.split(".")[1] in {"domain", "crypto"}
    ]
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, msgspec.Struct) and obj.__module__ == module_name:
                found[f"{module_name}.{name}"] = obj
    return [found[k] for k in sorted(found)]


STRUCTS = _all_structs()


def test_the_sweep_finds_the_formats_it_is_about() -> None:
    names = {t.__name__ for t in STRUCTS}
    assert {"ReferralRequest", "ReferralPayload", "SignedEnvelope", "EnvelopeBody", "Enrollment"} <= names


@pytest.mark.parametrize("type_", STRUCTS, ids=lambda t: f"{t.__module__.split('.')[-1]}.{t.__name__}")
@settings(max_examples=40, deadline=None)
@given(raw=st.one_of(hostile_bytes, json_values.map(msgspec.json.encode)))
def test_every_msgspec_type_refuses_garbage_with_its_own_errors(type_: type[msgspec.Struct], raw: bytes) -> None:
    try:
        value = msgspec.json.decode(raw, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return  # the errors every decoder of ours turns into its clear message (see the tests below)
    assert msgspec.json.decode(msgspec.json.encode(value), type=type_) == value


# --- the decoders that take bytes from outside, each with its own error --------------------------------

SECRETS = ClinicSecrets.generate("klinikk-a")
ENROLLMENT = msgspec.json.encode(
    make_enrollment(
        SECRETS, "Klinikk A", datetime(2026, 11, 1, tzinfo=UTC), organisation_number="987654325", her_id="8765432"
    )
)
BROKER = envelope.BrokerSigner.generate()


@FAST
@given(
    raw=st.one_of(
        hostile_bytes,
        json_values.map(msgspec.json.encode),
        _mutations(msgspec.json.decode(ENROLLMENT)).map(msgspec.json.encode),
    )
)
def test_enrolment_files_and_key_requests_are_refused_clearly(raw: bytes) -> None:
    for check in (check_enrollment, check_key_request):
        with contextlib.suppress(EnrollmentInvalid):
            check(raw)


@FAST
@given(raw=hostile_bytes)
def test_key_files_are_refused_clearly(raw: bytes) -> None:
    with pytest.raises(KeyFileError):
        keyfile.unlock(raw, "passphrase")


def _sealed() -> bytes:
    sealed = envelope.seal(
        b"payload",
        kind="referral",
        delivery_id="d-1",
        reference="RB-TEST",
        clinic="klinikk-a",
        issued_at=datetime(2026, 11, 1, tzinfo=UTC),
        recipient_keys=[SECRETS.encryption_public(0)],
        signer=BROKER,
    )
    return sealed.data


SEALED = _sealed()


@FAST
@given(
    raw=st.one_of(
        hostile_bytes,
        json_values.map(msgspec.json.encode),
        _mutations(msgspec.json.decode(SEALED)).map(msgspec.json.encode),
    )
)
def test_envelopes_that_are_not_exactly_as_signed_are_refused(raw: bytes) -> None:
    if raw == SEALED:
        return
    with pytest.raises(EnvelopeRejected):
        envelope.verify(raw, BROKER.public_key)


@FAST
@given(
    raw=st.one_of(st.binary(max_size=64), st.sampled_from(BUCKETS).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
)
def test_only_canonical_padding_is_accepted(raw: bytes) -> None:
    try:
        plain = unpad(raw)
    except EnvelopeRejected:
        return
    assert pad(plain) == raw  # one padding per plaintext: nothing else is taken for a payload
