"""The domain's rules: state machines, validation that names every wrong field, the age rule."""

from __future__ import annotations

from datetime import date

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from referral_broker.domain.delivery import TRANSITIONS, DeliveryStatus, can_move, check_move, sources_of
from referral_broker.domain.keys import KEY_TRANSITIONS, KeyState, check_key_move, key_sources_of
from referral_protocol.contact import ContactInvalid, age_on, normalise_email, normalise_phone
from referral_protocol.errors import IllegalTransition, InvalidRequest
from referral_protocol.referral import ReferralRequest, check_request
from referral_protocol.validation import decode_json
from tests.conftest import referral_json


def test_terminal_delivery_states_have_no_way_out() -> None:
    for state in (DeliveryStatus.ACKNOWLEDGED, DeliveryStatus.CANCELLED, DeliveryStatus.EXPIRED):
        assert not TRANSITIONS[state]
        with pytest.raises(IllegalTransition):
            check_move(state, DeliveryStatus.AVAILABLE)


def test_only_an_available_delivery_can_be_acknowledged() -> None:
    assert sources_of(DeliveryStatus.ACKNOWLEDGED) == ["available"]
    assert not can_move(DeliveryStatus.QUEUED, DeliveryStatus.ACKNOWLEDGED)


def test_revoked_key_cannot_come_back() -> None:
    with pytest.raises(IllegalTransition):
        check_key_move(KeyState.REVOKED, KeyState.ACTIVE)
    check_key_move(KeyState.PENDING, KeyState.ACTIVE)


def test_the_stores_sources_are_the_states_the_machines_let_move() -> None:
    for target in DeliveryStatus:
        assert sources_of(target) == sorted(s.value for s in DeliveryStatus if target in TRANSITIONS[s])
    for key_target in KeyState:
        assert key_sources_of(key_target) == sorted(s.value for s in KeyState if key_target in KEY_TRANSITIONS[s])
    assert key_sources_of(KeyState.RETIRED) == ["retiring"]
    assert key_sources_of(KeyState.PENDING) == []


def _decode(data: object) -> ReferralRequest:
    return decode_json(msgspec.json.encode(data), ReferralRequest)


def test_every_wrong_field_is_named_not_only_the_first() -> None:
    body = referral_json(["Bad Slug"])
    body["patient"] = {"name": "", "email": 3, "birth_date": "17.05.1990", "nickname": "x"}
    body["extra"] = True
    with pytest.raises(InvalidRequest) as caught:
        _decode(body)
    fields = {e.field: e.code for e in caught.value.errors}
    assert fields == {
        "extra": "unknown",
        "clinics[0]": "invalid",
        "patient.nickname": "unknown",
        "patient.name": "invalid",
        "patient.email": "invalid",
        "patient.phone": "required",
        "patient.birth_date": "invalid",
    }


def test_malformed_json_is_a_clear_error() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(b"{not json", ReferralRequest)
    assert caught.value.errors[0].field == "body"


def test_rules_name_each_broken_one() -> None:
    body = referral_json(["a", "a"], email="not-an-address", phone="123")
    body["consent"] = {"version": "1999-01-01", "accepted": False}
    body["need"] = {"category": "astrology", "description": "   "}
    with pytest.raises(InvalidRequest) as caught:
        check_request(_decode(body), today=date(2026, 11, 22), minimum_age=16)
    assert {e.field for e in caught.value.errors} == {
        "patient.email",
        "patient.phone",
        "need.description",
        "need.category",
        "consent.accepted",
        "consent.version",
        "clinics",
    }


@pytest.mark.parametrize(
    ("birth", "accepted"),
    [("2010-11-22", True), ("2010-11-23", False), ("2026-11-23", False), ("1890-01-01", False)],
)
def test_minimum_age_sixteen(birth: str, accepted: bool) -> None:
    request = _decode(referral_json(["a"], birth_date=birth))
    if accepted:
        check_request(request, today=date(2026, 11, 22), minimum_age=16)
    else:
        with pytest.raises(InvalidRequest) as caught:
            check_request(request, today=date(2026, 11, 22), minimum_age=16)
        assert [e.field for e in caught.value.errors] == ["patient.birth_date"]


def test_too_young_gets_a_message_that_says_what_to_do() -> None:
    request = _decode(referral_json(["a"], birth_date="2015-01-01"))
    with pytest.raises(InvalidRequest) as caught:
        check_request(request, today=date(2026, 11, 22), minimum_age=16)
    assert "at least 16" in caught.value.errors[0].message


def test_leap_day_birthday() -> None:
    assert age_on(date(2008, 2, 29), date(2024, 2, 28)) == 15
    assert age_on(date(2008, 2, 29), date(2024, 2, 29)) == 16
    assert age_on(date(2008, 2, 29), date(2025, 3, 1)) == 17


@pytest.mark.parametrize("typed", ["412 34 567", "+47 412 34 567", "0047 41234567", "41234567"])
def test_norwegian_mobile_numbers_as_people_type_them(typed: str) -> None:
    assert normalise_phone(typed) == "+4741234567"


@pytest.mark.parametrize("typed", ["123", "abc", "+47 1"])
def test_impossible_phone_numbers_are_refused(typed: str) -> None:
    with pytest.raises(ContactInvalid):
        normalise_phone(typed)


def test_email_is_checked_without_network() -> None:
    assert normalise_email(" Kari@Example.NO ") == "Kari@example.no"
    with pytest.raises(ContactInvalid):
        normalise_email("kari@@example")


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        ),
    )
)
def test_random_json_is_refused_clearly_never_crashes(data: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _decode(data)
    assert caught.value.errors


@pytest.mark.parametrize("body", [b'{"clinics":"\xff"}', b'{"zz":"\xc3\x28"}', b"\xff\xfe", b"[" * 10000])
def test_invalid_utf8_and_deep_nesting_are_refused_clearly(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(body, ReferralRequest)
    assert caught.value.errors[0].field == "body"
