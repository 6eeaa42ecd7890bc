"""Deployment defaults (issue 21 item 5): /metrics closed in production, HSTS only over https, /schema works
under the CSP."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from referral_broker.cli.broker import main
from referral_broker.services.settings import ConfigError, Settings
from referral_broker.web.app import create_app
from tests.conftest import Servers
from tests.processes import serving

PRODUCTION = {"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_PUBLIC_URL": "https://henvisning.example.no"}
#: What the privacy statement needs in production (tests/patient_web/test_privacy_statement.py checks the refusal).
CONTROLLER = {
    "REFERRAL_BROKER_CONTROLLER_NAME": "Henvisning Norge AS",
    "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER": "912 345 678",
    "REFERRAL_BROKER_CONTROLLER_ADDRESS": "Storgata 1, 0155 Oslo",
    "REFERRAL_BROKER_CONTROLLER_EMAIL": "personvern@henvisning.no",
    "REFERRAL_BROKER_PROCESSORS": "Driftspartner AS (servere, Norge)",
}


def test_serve_refuses_to_start_in_production_without_a_metrics_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("REFERRAL_BROKER_METRICS_TOKEN", "REFERRAL_BROKER_METRICS_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", "--port", "1"]) == 2  # refused before any port is opened
    error = capsys.readouterr().err
    assert "REFERRAL_BROKER_METRICS_TOKEN is not set" in error and "Traceback" not in error


def test_the_metrics_token_comes_from_a_secret_file_and_satisfies_production(tmp_path: Path) -> None:
    secret = tmp_path / "metrics_token"
    secret.write_text("scrape-token-from-a-secret\n")
    settings = Settings.from_env({**PRODUCTION, **CONTROLLER, "REFERRAL_BROKER_METRICS_TOKEN_FILE": str(secret)})
    assert settings.metrics_token == "scrape-token-from-a-secret"
    settings.check_fit_to_serve()
    with pytest.raises(ConfigError, match="REFERRAL_BROKER_METRICS_TOKEN"):
        Settings.from_env({**PRODUCTION, **CONTROLLER}).check_fit_to_serve()
    # A developer's machine (plain http, as `make dev` and the process tests run) may leave /metrics open.
    Settings.from_env({"DATABASE_URL": "postgresql://x/y"}).check_fit_to_serve()


async def test_hsts_is_sent_over_https_and_never_over_plain_http(settings: Settings) -> None:
    app = create_app(settings)
    for base, hsts in (("https://testserver.local", True), ("http://testserver.local", False)):
        async with AsyncTestClient(app=app, base_url=base) as client:
            for path in ("/", "/healthz", "/no-such-page", "/schema"):
                response = await client.get(path)
                assert ("strict-transport-security" in response.headers) is hsts, (base, path)
                assert "frame-ancestors 'none'" in response.headers["content-security-policy"]  # the rest always


def test_hsts_follows_x_forwarded_proto_only_from_a_trusted_proxy(
    servers: Servers, clean_db: str, redis_url: str, keys_dir: Path, tmp_path: Path
) -> None:
    https = {"x-forwarded-proto": "https"}
    proxy = {"REFERRAL_BROKER_TRUSTED_PROXIES": "127.0.0.1"}
    with serving(clean_db, redis_url, keys_dir, tmp_path / "a", **proxy) as (url, _):
        assert "max-age=" in httpx.get(f"{url}/healthz", headers=https).headers["strict-transport-security"]
        assert "strict-transport-security" not in httpx.get(f"{url}/healthz").headers
    with serving(clean_db, redis_url, keys_dir, tmp_path / "b") as (url, _):  # no proxy trusted: a forged header
        assert "strict-transport-security" not in httpx.get(f"{url}/healthz", headers=https).headers


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag in ("script", "iframe", "object", "embed")
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


async def test_every_schema_page_works_under_the_csp(settings: Settings) -> None:
    async with AsyncTestClient(app=create_app(settings), base_url="https://testserver.local") as client:
        page = await client.get("/schema")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        links = _Links()
        links.feed(page.text)
        assert links.scripts == 0, "a script: the CSP (default-src 'none') would block it"
        assert "/schema/openapi.json" in links.urls and "/api/v1/referrals" in page.text
        for url in links.urls:
            assert url.startswith("/"), f"{url}: another origin, which the CSP blocks"
            assert (await client.get(url)).status_code == 200, url
        document: dict[str, Any] = (await client.get("/schema/openapi.json")).json()
        assert "/api/v1/referrals" in document["paths"]
        for gone in ("swagger", "redoc", "elements", "rapidoc", "openapi.yaml"):
            assert (await client.get(f"/schema/{gone}")).status_code == 404, gone  # no page that loads a CDN
