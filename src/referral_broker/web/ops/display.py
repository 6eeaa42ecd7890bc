"""How the operator pages read: in bokmål or English (the browser's choice, else English, as they always were),
times in Oslo time, and ages a person takes in at a glance."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.response import Template

from referral_broker.web.i18n import LANGUAGE_COOKIE, OPS_LANGUAGES, Translator, choose_language, language_cookie

OSLO = ZoneInfo("Europe/Oslo")
#: Without a choice (`?lang=`, the language cookie, the browser's languages) the operator pages are English.
OPS_DEFAULT_LANGUAGE = "en"


def ops_translator(request: Request[Any, Any, Any]) -> Translator:
    return Translator(
        choose_language(
            request.query_params.get("lang"),
            request.cookies.get(LANGUAGE_COOKIE),
            request.headers.get("accept-language"),
            OPS_LANGUAGES,
            default=OPS_DEFAULT_LANGUAGE,
        )
    )


def ops_page(
    request: Request[Any, Any, Any],
    template_name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    **options: Any,
) -> Template:
    """An operator page in the operator's language: `t` for its texts, `show` for its times, and on a page a GET
    made, a link to it in the other language (`?lang=`, remembered in the language cookie)."""
    t = ops_translator(request)
    chosen = request.query_params.get("lang")
    cookies = []
    if chosen in OPS_LANGUAGES and chosen != request.cookies.get(LANGUAGE_COOKIE):
        cookies.append(language_cookie(chosen))
    switch = None
    if request.method in ("GET", "HEAD"):
        other = next(language for language in OPS_LANGUAGES if language != t.language)
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        switch = {
            "language": other,
            "url": "?" + urlencode([*query, ("lang", other)]),
            "name": Translator(other)("ops.site.language_name"),
        }
    return Template(
        template_name,
        context={"t": t, "show": Display(t), "ops_switch": switch, **context},
        status_code=status_code,
        cookies=cookies,
        **options,
    )


class Display:
    """Times and ages in one language."""

    def __init__(self, t: Translator) -> None:
        self.t = t

    def local_time(self, at: datetime | None) -> str:
        return local_time(at)

    def duration(self, span: timedelta | None) -> str:
        return duration(span, self.t)

    def seconds(self, value: float | None) -> str:
        return seconds(value, self.t)

    def ago(self, now: datetime, at: datetime | None, never: str | None = None) -> str:
        if not at:
            return never if never is not None else self.t("ops.time.never")
        return self.t("ops.time.ago", span=self.duration(now - at))


_ENGLISH: Translator | None = None


def _english() -> Translator:
    global _ENGLISH  # one English translator for callers that name no language
    if _ENGLISH is None:
        _ENGLISH = Translator("en")
    return _ENGLISH


def local_time(at: datetime | None) -> str:
    return at.astimezone(OSLO).strftime("%Y-%m-%d %H:%M:%S") if at else "—"


def duration(span: timedelta | None, t: Translator | None = None) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `2 d 4 h` (`t`, `d` in bokmål); `—` for none."""
    if span is None:
        return "—"
    t = t or _english()
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return t("ops.time.seconds", n=seconds)
    minutes = seconds // 60
    if minutes < 60:
        return t("ops.time.minutes", n=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        hours_text = t("ops.time.hours", n=hours)
        return f"{hours_text} {t('ops.time.minutes', n=minutes)}" if minutes else hours_text
    days, hours = divmod(hours, 24)
    days_text = t("ops.time.days", n=days)
    return f"{days_text} {t('ops.time.hours', n=hours)}" if hours else days_text


def ago(now: datetime, at: datetime | None, never: str | None = None) -> str:
    return Display(_english()).ago(now, at, never)


def seconds(value: float | None, t: Translator | None = None) -> str:
    """Like `duration`, with tenths under ten seconds (dispatch usually takes well under one)."""
    if value is None:
        return "—"
    if value < 10:
        return (t or _english())("ops.time.seconds", n=f"{round(value, 1):g}")
    return duration(timedelta(seconds=value), t)
