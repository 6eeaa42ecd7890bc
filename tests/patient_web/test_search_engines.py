"""Search engines: `/robots.txt` lets them read the public pages and keeps them out of a patient's own pages and
the operators'; the public pages describe themselves (a meta description) in the visitor's language."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.robotparser import RobotFileParser

import pytest
from litestar.testing import AsyncTestClient

from referral_broker.web.i18n import CATALOGUES
from tests.conftest import EnrolledClinic

PUBLIC = ["/", "/?lang=en", "/?category=physiotherapy&city=Oslo", "/send?clinic=fysio-oslo&clinic=psyk-oslo"]
KEPT_OUT = [
    "/manage/WV50wHHofDxtCPTHhNH-skGFPnTHu5pDAmoVhtJzeBs",
    "/rights",
    "/rights/",
    "/rights/requests",
    "/rights/export.json",
    "/ops",
    "/ops/login",
    "/ops/audit",
    "/api/v1/clinics",
]


async def test_robots_txt_allows_the_public_pages_and_disallows_manage_rights_and_ops(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/robots.txt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    robots = RobotFileParser()
    robots.parse(response.text.splitlines())
    for agent in ("*", "Googlebot", "Bingbot"):
        for path in PUBLIC:
            assert robots.can_fetch(agent, f"https://broker.test{path}"), (agent, path)
        for path in KEPT_OUT:
            assert not robots.can_fetch(agent, f"https://broker.test{path}"), (agent, path)


async def test_robots_txt_sets_no_cookie_and_carries_the_security_headers(client: AsyncTestClient[Any]) -> None:
    response = await client.get("/robots.txt")
    assert "set-cookie" not in response.headers  # exempt from CSRF: a crawler gets no token cookie
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "max-age=" in response.headers["strict-transport-security"]


class _Meta(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.descriptions: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and found.get("name") == "description":
            self.descriptions.append(found.get("content") or "")


def _descriptions(html: str) -> list[str]:
    parsed = _Meta()
    parsed.feed(html)
    return parsed.descriptions


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_the_public_pages_carry_a_meta_description_in_the_visitors_language(
    client: AsyncTestClient[Any], clinics: dict[str, EnrolledClinic], lang: str
) -> None:
    texts = CATALOGUES[lang]
    home = await client.get(f"/?lang={lang}")
    form = await client.get("/send?clinic=fysio-oslo")
    assert _descriptions(home.text) == [texts["meta.home_description"]]
    assert _descriptions(form.text) == [texts["meta.form_description"]]
    for key in ("meta.home_description", "meta.form_description"):
        assert 50 <= len(texts[key]) <= 160, key  # what a search engine shows, not cut off mid-sentence
        assert texts[key] != CATALOGUES["en" if lang == "nb" else "nb"][key], key
