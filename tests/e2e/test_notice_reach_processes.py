"""Notices only to clinics that had the referral, and a notice that travels with its referral (issue 19
items 4 and 5), through the real programs: `referral-broker serve` and `worker`, the patient's pages over
HTTP like a browser, and the real `referral-clinic pull`, whose folder is read the way the desk reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from referral_clinic import referral_view
from referral_clinic.desk.server import open_desk
from tests.conftest import Servers, referral_json
from tests.e2e.test_pipeline_processes import PASSPHRASE, Broker, started_broker
from tests.e2e.test_rights_processes import Browser, _act, _csrf, _files, _sign_in
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the fixture
from tests.processes import wait_for_value

pytestmark = pytest.mark.e2e

EMAIL = "zyx.reach.canary@example.no"
NEW_EMAIL = "zyx.reach.new@example.no"
_DESK_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def stack(servers: Servers, clean_db: str, redis_url: str, tmp_path: Path, mail_sink: MailSink) -> Iterator[Broker]:  # noqa: F811
    with started_broker(clean_db, redis_url, tmp_path, {"REFERRAL_BROKER_SMTP_URL": mail_sink.url}) as b:
        yield b


def _submit(stack: Broker, clinics: list[str]) -> tuple[str, str]:
    """(reference, manage path) of a referral sent through the public API."""
    body = referral_json(clinics, description="Vondt i skulderen", email=EMAIL, name="Zyx Nordmann")
    response = httpx.post(f"{stack.url}/api/v1/referrals", json=body, timeout=10)
    assert response.status_code == 201, response.text
    answer = response.json()
    return answer["reference"], "/manage/" + answer["manage_url"].rsplit("/", 1)[1]


async def test_a_clinic_that_never_fetched_the_referral_is_not_told_of_its_withdrawal_or_erasure(
    stack: Broker,
    mail_sink: MailSink,  # noqa: F811
) -> None:
    a, b = stack.clinic("klinikk-a"), stack.clinic("klinikk-b")
    stack.start_worker()
    reference, manage_path = _submit(stack, ["klinikk-a", "klinikk-b"])
    await wait_for_value(stack.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 2)
    inbox_a, inbox_b = stack.folder / "inbox-a", stack.folder / "inbox-b"
    code, output = stack.pull(a, inbox_a)  # klinikk-a fetches it; klinikk-b has not pulled yet
    assert code == 0, output
    assert _files(inbox_a) == [f"{reference}.json"]

    with Browser(stack.url) as browser:
        # Withdrawal from the manage link: the receipt names who was told and who had not received it.
        page = browser.get(manage_path)
        assert page.status_code == 200
        asked = browser.post(f"{manage_path}/withdraw", data={"_csrf_token": _csrf(page.text)})
        assert asked.status_code == 200, asked.text  # the confirm step says the same before anything is done
        assert "har ikke mottatt henvendelsen, og får derfor ingen beskjed: Klinikk klinikk-b." in asked.text
        withdrawn = browser.post(f"{manage_path}/withdraw/confirm", data={"_csrf_token": _csrf(page.text)})
        assert withdrawn.status_code == 200, withdrawn.text
        receipt = withdrawn.text
        assert "får beskjed om at du trakk tilbake samtykket: Klinikk klinikk-a." in receipt
        assert (
            "hadde ikke mottatt henvendelsen ennå, og har derfor ikke fått noen beskjed: Klinikk klinikk-b." in receipt
        )

        # Then erasure from the rights pages, the same.
        _sign_in(browser, mail_sink, EMAIL)
        confirm = _act(browser, "/rights/erase", reference=reference).text
        assert "har ikke mottatt henvendelsen, og får derfor ingen beskjed: Klinikk klinikk-b." in confirm
        erased = _act(browser, "/rights/erase/confirm", reference=reference).text
        assert "må slette sin kopi med mindre de har plikt til å beholde den: Klinikk klinikk-a." in erased
        assert "har derfor ikke fått noen beskjed: Klinikk klinikk-b." in erased

    code, output = stack.pull(a, inbox_a)
    assert code == 0, output
    code, output = stack.pull(b, inbox_b)
    assert code == 0, output
    assert any(n.startswith(f"{reference}.erasure-") for n in _files(inbox_a))
    assert _files(inbox_b) == []  # neither the referral nor any notice about it
    await wait_for_value(
        stack.database_url,
        """SELECT string_agg(c.slug || ':' || n.kind, ',' ORDER BY n.created_at) FROM clinic_notices n
           JOIN clinics c ON c.id = n.clinic_id""",
        "klinikk-a:withdrawal,klinikk-a:erasure",
    )


async def test_a_correction_made_while_the_referral_waited_is_filed_with_it_in_one_pull(
    stack: Broker,
    mail_sink: MailSink,  # noqa: F811
) -> None:
    b = stack.clinic("klinikk-b")
    stack.start_worker()
    reference, _ = _submit(stack, ["klinikk-b"])
    await wait_for_value(stack.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 1)

    with Browser(stack.url) as browser:
        _sign_in(browser, mail_sink, EMAIL)
        corrected = _act(
            browser,
            "/rights/correct/save",
            reference=reference,
            name="Zyx Nordmann",
            email=NEW_EMAIL,
            phone="412 34 567",
            birth_date="17.05.1990",
        ).text
        assert (
            "De får de rettede opplysningene sammen med henvendelsen: Klinikk klinikk-b." in corrected
        )  # the receipt says how klinikk-b learns of it

    inbox_b = stack.folder / "inbox-b"
    code, output = stack.pull(b, inbox_b)  # one pull: the referral and its correction together
    assert code == 0, output
    names = _files(inbox_b)
    assert f"{reference}.json" in names
    assert [n for n in names if n.startswith(f"{reference}.correction-")], names
    local = referral_view.load(inbox_b, reference)  # the desk's view of the folder
    assert local.received_patient.email == EMAIL  # sealed at submission
    assert local.patient.email == NEW_EMAIL  # shown already corrected
    assert [c.field for c in local.corrections[0].changes] == ["email"]

    desk = open_desk(b, inbox_b, lang="en", interval=3600)  # the desk on what that one pull filed
    desk.serve_in_background()
    try:
        client = httpx.Client(base_url=desk.guard.origin, timeout=30)
        assert client.get(desk.guard.start_url.removeprefix(desk.guard.origin)).status_code == 303
        token = _DESK_CSRF.search(client.get("/").text)
        assert token is not None
        unlocked = client.post("/unlock", data={"csrf": token.group(1), "passphrase": PASSPHRASE})
        assert unlocked.status_code == 303
        page = client.get(f"/referral/{reference}").text
        assert f"<dt>E-mail</dt><dd>{NEW_EMAIL}</dd>" in page  # the patient's details, already corrected
        assert "Corrected by the patient on" in page
        assert f"<del>{EMAIL}</del> → <ins>{NEW_EMAIL}</ins>" in page  # and what changed
    finally:
        desk.stop()

    code, output = stack.pull(b, inbox_b)  # nothing more comes, nothing twice
    assert code == 0, output
    assert _files(inbox_b) == names
    await wait_for_value(
        stack.database_url,
        "SELECT count(*) FROM clinic_notices WHERE status = 'acknowledged' AND envelope IS NULL",
        1,
    )
