"""A broken or hostile broker: whatever bytes it answers with, `referral-clinic pull` ends with a message
and exit code 1 — never a traceback — and writes and acknowledges nothing."""

from __future__ import annotations

import pytest

from clinic_folder import Clinic


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b'{"items": [{"delivery_id": "\xff\xfe", "envelope": ""}], "more": false}', "invalid UTF-8 in a string"),
        (b"[" * 100_000 + b"]" * 100_000, "nesting deeper than any decoder allows"),
        (b'{"items": "not a list", "more": false}', "the wrong shape"),
        (b"\x00\x01 not json", "not JSON at all"),
    ],
)
def test_a_page_no_broker_would_send_stops_the_pull_cleanly(
    clinic: Clinic, capsys: pytest.CaptureFixture[str], answer: bytes, why: str
) -> None:
    clinic.broker.raw_page = answer
    assert clinic.pull() == 1, why
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "referral-clinic:" in err
    assert not list(clinic.out.glob("*.json"))
    assert clinic.broker.ack_calls == []
