"""Rendering a patient page in the visitor's language, with the language switch and its cookie."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request
from litestar.datastructures import Cookie
from litestar.response import Template

from referral_broker.web.i18n import LANGUAGES, Language, Translator, as_language, choose_language

#: The visitor's language choice: functional, not tracking; `__Host-` so no other host can set it.
LANGUAGE_COOKIE = "__Host-lang"
_ONE_YEAR = 365 * 24 * 3600

#: Marks "build the switch link from the current URL" (the default) apart from None ("no switch here").
SAME_PAGE = "same-page"


def language_of(request: Request[Any, Any, Any]) -> Language:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
    )


def other_language(language: Language) -> Language:
    return next(lang for lang in LANGUAGES if lang != language)


def switch_link(request: Request[Any, Any, Any], language: Language, keep: list[tuple[str, str]] | None = None) -> str:
    """A relative link to this page in the other language: the query `keep`s what it is given, or the current one."""
    params = keep if keep is not None else [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return "?" + urlencode([*params, ("lang", other_language(language))])


def render(
    request: Request[Any, Any, Any],
    template_name: str,
    *,
    status_code: int = 200,
    switch_url: str | None = SAME_PAGE,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """A page in the visitor's language. `switch_url=None` leaves the language switch out (a page made by a POST)."""
    language = language_of(request)
    if switch_url == SAME_PAGE:
        switch_url = switch_link(request, language)
    cookies: list[Cookie] = []
    chosen = as_language(request.query_params.get("lang"))
    if chosen is not None and chosen != request.cookies.get(LANGUAGE_COOKIE):
        cookies.append(
            Cookie(
                key=LANGUAGE_COOKIE,
                value=chosen,
                path="/",
                max_age=_ONE_YEAR,
                secure=True,
                httponly=True,
                samesite="lax",
            )
        )
    return Template(
        template_name=template_name,
        context={
            "t": Translator(language),
            "switch_url": switch_url,
            "other_language": other_language(language),
            **context,
        },
        status_code=status_code,
        cookies=cookies,
        headers=headers or {},
        media_type=MediaType.HTML,  # Litestar adds the one charset
    )
