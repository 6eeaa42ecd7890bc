"""Row ids begin with their day, so a day's rows sit together in the indexes, and are random after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from referral_broker.domain.ids import day_of, new_id

NOW = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


def test_an_id_is_a_version_8_uuid_that_carries_its_day_and_no_more() -> None:
    made = new_id(NOW)
    assert made.version == 8 and made.variant == uuid.RFC_4122
    assert day_of(made) == (NOW.date() - datetime(1970, 1, 1).date()).days
    assert day_of(new_id(NOW.replace(hour=23, minute=59))) == day_of(made)  # the hour is not in it


def test_ids_of_later_days_sort_after_and_ids_of_a_day_are_not_guessable() -> None:
    today = {new_id(NOW) for _ in range(2000)}
    assert len(today) == 2000
    tomorrow = new_id(NOW + timedelta(days=1))
    assert all(i < tomorrow for i in today)  # PostgreSQL orders uuids by their bytes, as Python does
    low_bits = {i.int & 0xFFFF_FFFF for i in today}
    assert len(low_bits) > 1990  # random after the day, not a counter


@pytest.mark.parametrize("when", [datetime(1969, 12, 31, tzinfo=UTC), datetime(2150, 1, 1, tzinfo=UTC)])
def test_a_day_an_id_cannot_carry_is_refused(when: datetime) -> None:
    with pytest.raises(ValueError, match="outside"):
        new_id(when)
