"""How times and ages read on the operator pages: Oslo time, and ages a person takes in at a glance."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")


def local_time(at: datetime | None) -> str:
    return at.astimezone(OSLO).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


def duration(span: timedelta | None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h`; `—` for none."""
    if span is None:
        return "—"
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(now: datetime, at: datetime | None, never: str = "never") -> str:
    return f"{duration(now - at)} ago" if at else never


def seconds(value: float | None) -> str:
    """Like `duration`, with tenths under ten seconds (dispatch usually takes well under one)."""
    if value is None:
        return "—"
    return f"{round(value, 1):g} s" if value < 10 else duration(timedelta(seconds=value))
