"""Every patient page: the security headers, nothing from other origins, no tracking, only functional cookies."""

from __future__ import annotations

from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from litestar.testing import AsyncTestClient

from referral_broker.services.context import BrokerContext
from tests.conftest import EnrolledClinic
from tests.patient_web.conftest import manage_token_of, send_form

FUNCTIONAL_COOKIES = {"__Host-csrf", "__Host-lang"}
OWN_ORIGINS = {"https://testserver.local", "https://broker.test"}  # the site, and its public URL in links


class _Page(HTMLParser):
    """The URLs a page would make a browser load or send to, and anything that runs or styles inline."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0
        self.inline = 0
        self.html_lang: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.html_lang = found.get("lang")
        if tag in ("script", "style", "iframe", "object", "embed"):
            self.scripts += 1
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "formaction", "poster", "data") and value:
                self.urls.append(value)
            if name == "style" or name.startswith("on"):
                self.inline += 1


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


async def _every_page(client: AsyncTestClient[Any], broker: BrokerContext) -> dict[str, Any]:
    """Each GET page a patient can reach, in both languages, including a real manage page."""
    first_visit = await client.get("/")
    receipt = await send_form(client, ["fysio-oslo"])
    token = manage_token_of(receipt.text)
    paths = [
        "/",
        "/?lang=en",
        "/?category=physiotherapy&city=Oslo",
        "/send",
        "/send?clinic=fysio-oslo&clinic=psyk-oslo",
        "/send?clinic=fysio-oslo&lang=en",
        f"/manage/{token}",
        f"/manage/{token}?lang=en",
        "/manage/not-a-token",
        "/no-such-page",
        "/personvern",
        "/personvern?lang=en",
    ]
    pages = {path: await client.get(path) for path in paths}
    pages["POST /send (receipt)"] = receipt
    pages["/ (first visit)"] = first_visit
    return pages


async def test_every_page_carries_the_security_headers(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    pages = await _every_page(client, broker)
    pages["/static/site.css"] = await client.get("/static/site.css")
    for path, response in pages.items():
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert "script-src" not in csp and "unsafe-inline" not in csp, path
        assert "max-age=" in response.headers["strict-transport-security"], path
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        if path.startswith("/send?"):
            # The empty form (nothing personal) may be kept for Back, so a repeat keeps its one-time key (0064).
            assert response.headers["cache-control"] == "private, no-cache", path
        else:
            assert response.headers["cache-control"] == "no-store", path  # receipt and manage pages above all
    assert pages["/static/site.css"].headers["content-type"].startswith("text/css")


async def test_pages_load_nothing_from_another_origin_and_run_no_script(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    for path, response in (await _every_page(client, broker)).items():
        assert response.headers["content-type"].startswith("text/html"), path
        page = parse(response.text)
        assert page.scripts == 0 and page.inline == 0, f"{path} has script, inline style or an event handler"
        assert page.urls, path
        for url in page.urls:
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            assert not parts.netloc or origin in OWN_ORIGINS, f"{path} refers to {url}"
            assert parts.scheme in ("", "https"), f"{path} refers to {url}"
        for word in ("google-analytics", "gtag(", "googletagmanager", "matomo", "plausible.io", "facebook.", "hotjar"):
            assert word not in response.text.lower(), f"{path} mentions {word}"


async def test_only_functional_cookies_are_set_and_each_is_host_only_secure_and_httponly(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    seen: set[str] = set()
    for path, response in (await _every_page(client, broker)).items():
        for header in response.headers.get_list("set-cookie"):
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                seen.add(name)
                assert name in FUNCTIONAL_COOKIES, f"{path} sets {name}"
                assert morsel["secure"] and morsel["httponly"], header
                assert morsel["path"] == "/" and not morsel["domain"], header
                assert morsel["samesite"].lower() in ("strict", "lax"), header
    assert seen == FUNCTIONAL_COOKIES


async def test_json_api_and_probes_set_no_cookie(client: AsyncTestClient[Any], broker: BrokerContext) -> None:
    for path in ("/api/v1/consent", "/api/v1/clinics", "/healthz", "/static/site.css"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "set-cookie" not in response.headers, path


async def test_pages_declare_their_language(
    client: AsyncTestClient[Any], broker: BrokerContext, clinics: dict[str, EnrolledClinic]
) -> None:
    assert parse((await client.get("/")).text).html_lang == "nb"
    assert parse((await client.get("/", headers={"accept-language": "en-GB,en;q=0.9"})).text).html_lang == "en"
    # Nynorsk has its own catalogue since issue 23 (it was bokmål before).
    assert parse((await client.get("/", headers={"accept-language": "sv,nn;q=0.8,en;q=0.5"})).text).html_lang == "nn"
    assert parse((await client.get("/", headers={"accept-language": "sv,no;q=0.8,en;q=0.5"})).text).html_lang == "nb"
    assert parse((await client.get("/?lang=en")).text).html_lang == "en"
    # The choice is remembered (functional cookie) over what the browser prefers …
    assert parse((await client.get("/", headers={"accept-language": "nb"})).text).html_lang == "en"
    # … until the visitor switches back.
    assert parse((await client.get("/?lang=nb")).text).html_lang == "nb"
    assert parse((await client.get("/", headers={"accept-language": "en"})).text).html_lang == "nb"
