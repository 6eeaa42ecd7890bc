"""schemathesis hooks (`SCHEMATHESIS_HOOKS=tests.security.signed_clinic_requests`): sign every clinic request.

Each request to `/api/v1/clinic/…` is signed as `referral-clinic` signs it (`referral_protocol.request_signature`),
with the enrolled test clinic's key named by the environment, over the exact bytes `requests` sends: the
signature is made in a `requests` auth hook on the prepared request, after schemathesis has serialised the body
and the query. Generated `Signature`, `Signature-Input` and `Content-Digest` values are replaced. Every answer's
status is appended to a file, so the test can show that the signed requests got past the signature check.
"""

from __future__ import annotations

import os
from typing import Any

import requests
import schemathesis

from referral_protocol.request_signature import sign_request

KEY_ID = "REFERRAL_TEST_CLINIC_KEY_ID"
SEED = "REFERRAL_TEST_CLINIC_SEED"  # hex; a key made for this test run only
STATUSES = "REFERRAL_TEST_CLINIC_STATUSES"  # file: one "METHOD PATH STATUS FIELDS" line per answer
_SIGNATURE_HEADERS = ("signature", "signature-input", "content-digest")


class ClinicSignature(requests.auth.AuthBase):
    def __init__(self, key_id: str, seed: bytes) -> None:
        self.key_id = key_id
        self.seed = seed

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body.encode() if isinstance(request.body, str) else request.body
        for name in _SIGNATURE_HEADERS:
            request.headers.pop(name, None)
        request.headers.update(
            sign_request(
                str(request.method),
                str(request.url),
                dict(request.headers),
                body or None,
                key_id=self.key_id,
                seed=self.seed,
            )
        )
        return request


def _is_clinic(case: Any) -> bool:
    return str(case.operation.path).startswith("/api/v1/clinic/")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if _is_clinic(case):
        kwargs["auth"] = ClinicSignature(os.environ[KEY_ID], bytes.fromhex(os.environ[SEED]))


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """A long poll (`wait`) on an inbox read to its end holds its answer up to 25 s: keep valid waits to a second,
    so the run tries holding without spending minutes in it (long polling has tests of its own)."""
    wait = query.get("wait") if query else None
    if query is not None and isinstance(wait, int) and not isinstance(wait, bool) and 1 < wait <= 25:
        query["wait"] = 1
    return query


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    if _is_clinic(case) and os.environ.get(STATUSES):
        with open(os.environ[STATUSES], "a", encoding="utf-8") as out:
            out.write(f"{case.method.upper()} {case.operation.path} {response.status_code} {_fields(response)}\n")


def _fields(response: Any) -> str:
    """The top-level fields of a JSON answer (`error`, `errors`, …): which refusal it was."""
    try:
        answer = response.json()
    except ValueError:
        return "-"
    return ",".join(sorted(answer)) if isinstance(answer, dict) and answer else "-"
