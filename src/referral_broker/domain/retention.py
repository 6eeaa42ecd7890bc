"""How long personal data is kept: the one place the retention rules are stated."""

from __future__ import annotations

import calendar
from datetime import datetime
from zoneinfo import ZoneInfo

#: Contact data is kept this many calendar months after the last dispatch (creation, if never
#: dispatched), then anonymised. Configuration may change it (REFERRAL_BROKER_RETENTION_MONTHS).
RETENTION_MONTHS = 5

LOCAL_TIME = ZoneInfo("Europe/Oslo")


def months_before(moment: datetime, months: int, tz: ZoneInfo = LOCAL_TIME) -> datetime:
    """The same local wall-clock time `months` calendar months earlier, the day clamped to the month's end.

    31 July minus five months is 28 (or 29) February: a referral dispatched on 28 February is due on 31 July.
    """
    return _shift(moment, -months, tz)


def months_after(moment: datetime, months: int, tz: ZoneInfo = LOCAL_TIME) -> datetime:
    """The same local wall-clock time `months` calendar months later, the day clamped to the month's end."""
    return _shift(moment, months, tz)


def _shift(moment: datetime, months: int, tz: ZoneInfo) -> datetime:
    local = moment.astimezone(tz)
    month_index = local.year * 12 + (local.month - 1) + months
    year, month = divmod(month_index, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day).astimezone(moment.tzinfo)
