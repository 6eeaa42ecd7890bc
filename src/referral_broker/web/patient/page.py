"""Rendering a patient page in the visitor's language, with the language switch and its cookie."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from litestar import MediaType, Request
from litestar.datastructures import Cookie
from litestar.response import Template

from referral_broker.web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    Language,
    Translator,
    as_language,
    choose_language,
    language_cookie,
)

#: Marks "build the switch links from the current URL" (the default) apart from None ("no switch here"); any
#: other `switch_url` is the page to link in each other language (`lang=` is added).
SAME_PAGE = "same-page"


def language_of(request: Request[Any, Any, Any]) -> Language:
    return choose_language(
        request.query_params.get("lang"),
        request.cookies.get(LANGUAGE_COOKIE),
        request.headers.get("accept-language"),
    )


def switch_link(request: Request[Any, Any, Any], keep: list[tuple[str, str]] | None = None) -> str:
    """A relative link to this page, to which the switch adds each other language: the query `keep`s what it is
    given, or the current one."""
    params = keep if keep is not None else [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return "?" + urlencode(params)


@dataclass(frozen=True)
class LanguageLink:
    """One link of the language switch, named in the language it leads to."""

    language: Language
    url: str
    name: str
    label: str


def language_links(switch_url: str, language: Language) -> list[LanguageLink]:
    """The page at `switch_url` in every language but `language`."""
    links = []
    for other in LANGUAGES:
        if other != language:
            path, _, query = switch_url.partition("?")
            url = f"{path}?{urlencode([*parse_qsl(query, keep_blank_values=True), ('lang', other)])}"
            t = Translator(other)
            links.append(LanguageLink(other, url, t("site.language_name"), t("site.language_switch_label")))
    return links


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
        switch_url = switch_link(request)
    cookies: list[Cookie] = []
    chosen = as_language(request.query_params.get("lang"))
    if chosen is not None and chosen != request.cookies.get(LANGUAGE_COOKIE):
        cookies.append(language_cookie(chosen))
    return Template(
        template_name=template_name,
        context={
            "t": Translator(language),
            "language_switch": language_links(switch_url, language) if switch_url is not None else [],
            **context,
        },
        status_code=status_code,
        cookies=cookies,
        headers=headers or {},
        media_type=MediaType.HTML,  # Litestar adds the one charset
    )
