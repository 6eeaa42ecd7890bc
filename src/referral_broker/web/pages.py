"""What every HTML page of the service shares: the Jinja templates, the one stylesheet, CSRF protection.

Templates live in `web/templates/` (`base.html` is the frame any audience's pages may extend; it expects
`t`, a `web.i18n.Translator`, whose language `_()` and `ngettext()` speak, and `language_switch`); the
stylesheet in `web/static/`. Autoescape is on, and an undefined template variable is an error rather than an
empty string.
"""

from __future__ import annotations

from collections.abc import Sequence
from hmac import compare_digest
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar.config.csrf import CSRFConfig
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRF_SECRET_LENGTH, CSRFMiddleware, generate_csrf_hash
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from litestar.types import ASGIApp

from referral_broker.services.page_secrets import csrf_secrets
from referral_broker.services.settings import Settings
from referral_broker.web import i18n

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

CSRF_COOKIE = "__Host-csrf"
CSRF_FIELD = "_csrf_token"  # the form field Litestar's CSRF middleware reads
#: Paths without forms: the JSON API (the clinic API is signed instead), probes, metrics, the schema, static files,
#: robots.txt (no CSRF cookie for a crawler).
CSRF_EXEMPT = ["^/api/", "^/healthz$", "^/readyz$", "^/metrics$", "^/schema", "^/static/", "^/robots\\.txt$"]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    i18n.install(environment)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


def static_files() -> Router:
    return create_static_files_router(path="/static", directories=[STATIC_DIR], name="static")


def csrf_config(settings: Settings) -> CSRFConfig:
    """Double-submit CSRF: a signed token in a `__Host-` cookie and the same token in each form.

    The form field is read on the server, so the cookie can be HttpOnly; SameSite=Strict adds a second
    wall. The secret is derived from the broker's data secret, so every server process agrees on it.
    """
    return CSRFConfig(
        secret=csrf_secrets(settings.keys_dir)[0],
        cookie_name=CSRF_COOKIE,
        cookie_path="/",
        cookie_secure=True,
        cookie_httponly=True,
        cookie_samesite="strict",
        exclude=CSRF_EXEMPT,
    )


class CSRFCheck(CSRFMiddleware):
    """Litestar's check, where a token that is not ASCII text (or is a file, in a multipart form) is a wrong
    token, refused with 403 and the usual page, rather than a TypeError from `hmac.compare_digest` (500);
    and a token signed under a fallback data key's secret is still good until that key is retired."""

    def __init__(self, app: ASGIApp, config: CSRFConfig, fallback_secrets: Sequence[str] = ()) -> None:
        super().__init__(app, config)
        self._fallback_secrets = list(fallback_secrets)

    def _decode_csrf_token(self, token: str) -> str | None:
        decoded = super()._decode_csrf_token(token)
        if decoded is None and len(token) > CSRF_SECRET_LENGTH:
            part, mac = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
            if any(compare_digest(mac, generate_csrf_hash(part, s)) for s in self._fallback_secrets):
                return part
        return decoded

    def _csrf_tokens_match(self, request_csrf_token: Any, cookie_csrf_token: Any) -> bool:
        tokens = (request_csrf_token, cookie_csrf_token)
        return all(isinstance(t, str) and t.isascii() for t in tokens) and super()._csrf_tokens_match(*tokens)


def csrf_protection(settings: Settings) -> DefineMiddleware:
    """The app's CSRF middleware (given as middleware, since `Litestar(csrf_config=…)` takes only its own class)."""
    return DefineMiddleware(
        CSRFCheck, config=csrf_config(settings), fallback_secrets=csrf_secrets(settings.keys_dir)[1:]
    )
