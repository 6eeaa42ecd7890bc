"""The whole site as one visitor who is everyone at once: a patient with a manage link and a rights session,
an operator signed in to /ops, and a clinic that signs its API calls. The routes come from the app's own
route table, so a new route is covered without being named here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pyotp
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from referral_broker.services import operators
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app
from referral_protocol.encoding import key_id
from referral_protocol.request_signature import sign_request
from tests.conftest import EnrolledClinic, RecordingDoorbell
from tests.patient_web.conftest import csrf_of, enrol_patient_clinics, manage_token_of, send_form

BASE = "https://testserver.local"
TEMPLATES = Path(__file__).parents[2] / "src" / "referral_broker" / "web" / "templates"
PASSWORD = "correct horse battery staple"
KARI = "kari@example.no"
#: Paths that answer in JSON or plain bytes rather than as a page.
NOT_PAGES = ("/api/", "/schema", "/protocol/", "/healthz", "/readyz", "/metrics", "/static/")
_CODE_ID = re.compile(r'name="code_id" value="([0-9a-f-]{36})"')
_REFERENCE = re.compile(r"RB-[0-9A-Z]{5}-[0-9A-Z]{5}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # as in the route table: /ops/clinics/{slug:str}/suspend
    path_parameters: tuple[str, ...]
    query_parameters: tuple[str, ...]

    @property
    def is_page(self) -> bool:
        return not self.template.startswith(NOT_PAGES)

    @property
    def is_clinic_api(self) -> bool:
        return self.template.startswith("/api/v1/clinic/")


def every_route(app: Litestar) -> list[Route]:
    """Every (method, route) of the app but OPTIONS and HEAD, with its path and query parameters."""
    found = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            dependencies = set(handler.resolve_dependencies())
            query = tuple(
                name
                for name, field in handler.parsed_fn_signature.parameters.items()
                if type(field.kwarg_definition).__name__ == "QueryParameter" and name not in dependencies
            )
            for method in sorted(set(handler.http_methods) - {"OPTIONS", "HEAD"}):
                found.append(Route(method, route.path, tuple(route.path_parameters), query))
    # Signing out last, so every other route is tried while signed in.
    return sorted(found, key=lambda r: (r.template.endswith(("/logout", "/sign-out")), r.template, r.method))


def form_fields() -> list[str]:
    """Every form field name the site's templates use, and the patient form's fields (named in a macro)."""
    named = set(re.findall(r'<(?:input|textarea|select|button)[^>]*\bname="([a-z_]+)"', _all_templates()))
    return sorted(named | {"name", "email", "phone", "birth_date"})


def _all_templates() -> str:
    return "\n".join(p.read_text() for p in TEMPLATES.rglob("*.html"))


@dataclass
class Site:
    app: Litestar
    client: AsyncTestClient[Any]
    broker: BrokerContext
    clinic: EnrolledClinic
    manage_token: str
    reference: str
    operator: str
    good: dict[str, str]  # a harmless value for each form field

    def concrete(self, route: Route, replace: dict[str, str] | None = None) -> str:
        """The route's path with each parameter filled: a real value, or the (already encoded) one given."""
        real = {
            "token": self.manage_token,
            "slug": self.clinic.slug,
            "delivery_id": str(uuid.uuid4()),
            "file_path": "site.css",
            "path": "openapi.json",
        }
        path = route.template
        for name in route.path_parameters:
            value = (replace or {}).get(name, real.get(name, "x"))
            path = re.sub(r"\{" + name + r"(:[a-z]+)?\}", value.replace("\\", "\\\\"), path)
        return path

    async def csrf_token(self) -> str:
        return str(self.client.cookies.get("__Host-csrf") or csrf_of((await self.client.get("/rights")).text))

    def signed(self, method: str, path: str, body: bytes | None = None) -> dict[str, str]:
        base = {"content-type": "application/json"} if body else {}
        return sign_request(
            method,
            BASE + path,
            base,
            body,
            key_id=key_id(self.clinic.secrets.signing_public),
            seed=self.clinic.secrets.signing_seed,
        )


@pytest.fixture(name="site")
async def site_fixture(settings: Settings, broker: BrokerContext, tmp_path: Path) -> AsyncIterator[Site]:
    outbox = tmp_path / "outbox"
    changed = msgspec.structs.replace(settings, submit_rate=0, dev_outbox=outbox)
    app = create_app(changed, doorbell_factory=lambda s: RecordingDoorbell())
    clinics = await enrol_patient_clinics(broker)
    made = await operators.create_operator(broker, "olga", "operator", PASSWORD, actor="test")
    async with AsyncTestClient(app=app, base_url=BASE) as client:
        receipt = await send_form(client, ["fysio-oslo"])
        assert receipt.status_code == 200, receipt.text
        reference = _REFERENCE.search(receipt.text)
        assert reference
        await _sign_in_as_operator(client, made.username, made.totp_secret)
        await _sign_in_to_rights(client, outbox)
        good = {
            **{name: "" for name in form_fields()},
            "clinic": "fysio-oslo",
            "category": "physiotherapy",
            "description": "Vondt i kneet",
            "name": "Kari Nordmann",
            "email": KARI,
            "phone": "412 34 567",
            "birth_date": "17.05.1990",
            "consent": "on",
            "consent_version": "2026-11-01",
            "channel": "email",
            "reference": reference.group(0),
            "username": made.username,
            "password": PASSWORD,
            "fingerprint": "x",
            "token": manage_token_of(receipt.text),
        }
        yield Site(
            app,
            client,
            broker,
            clinics["fysio-oslo"],
            manage_token_of(receipt.text),
            reference.group(0),
            made.username,
            good,
        )


async def _sign_in_as_operator(client: AsyncTestClient[Any], username: str, totp_secret: str) -> None:
    page = await client.get("/ops/login")
    signed_in = await client.post(
        "/ops/login",
        data={
            "username": username,
            "password": PASSWORD,
            "code": pyotp.TOTP(totp_secret).now(),
            "_csrf_token": csrf_of(page.text),
        },
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text


async def _sign_in_to_rights(client: AsyncTestClient[Any], outbox: Path) -> None:
    page = await client.get("/rights")
    asked = await client.post(
        "/rights/code", data={"_csrf_token": csrf_of(page.text), "channel": "email", "email": KARI}
    )
    assert asked.status_code == 200, asked.text
    message = max(outbox.iterdir()).read_text()
    code = re.search(r"\b(\d{6})\b", message)
    code_id = _CODE_ID.search(asked.text)
    assert code and code_id, message
    entered = await client.post(
        "/rights/verify",
        data={"_csrf_token": csrf_of(asked.text), "code_id": code_id.group(1), "code": code.group(1)},
    )
    assert entered.status_code == 200 and str(entered.url).endswith("/rights/requests"), entered.text
