"""Customer service for anyone (`/kontakt`): the form, its guards, its receipt, and what is stored of it."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from referral_broker.crypto.contact import ContactDecryptionFailed
from referral_broker.services import customer_service
from referral_broker.services.context import BrokerContext
from tests.patient_web.conftest import FIXED_NOW, csrf_of, send_form

CANARY_TEXT = "Kanarifugl-melding-7731 om kneet mitt"
CANARY_EMAIL = "kanari.7731@example.no"
_REFERENCE = re.compile(r"<strong>(KS-[0-9A-Z]{5}-[0-9A-Z]{5})</strong>")


def _fixed() -> Any:
    return FIXED_NOW


async def _token(client: AsyncTestClient[Any], lang: str | None = None) -> str:
    page = await client.get("/kontakt" + (f"?lang={lang}" if lang else ""))
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def _send(client: AsyncTestClient[Any], lang: str | None = None, **fields: str) -> Any:
    data = {"message": CANARY_TEXT, "reply_email": CANARY_EMAIL, "about": "", "website": "", **fields}
    return await client.post("/kontakt", data={**data, "_csrf_token": await _token(client, lang)})


async def _stored(broker: BrokerContext) -> int:
    return int(await broker.pool.fetchval("SELECT count(*) FROM customer_messages"))


@pytest.mark.parametrize(
    ("lang", "title", "reply"),
    [
        ("nb", "Meldingen er sendt", "Vi svarer på e-post til adressen du oppga."),
        ("en", "Your message has been sent", "We will answer by e-mail to the address you gave."),
        ("nn", "Meldinga er send", "Vi svarar på e-post til adressa du oppgav."),
    ],
)
async def test_a_message_is_received_and_its_sender_gets_a_reference(
    make_client: Any, broker: BrokerContext, lang: str, title: str, reply: str
) -> None:
    client = await make_client()
    page = await client.get(f"/kontakt?lang={lang}")
    assert f'<html lang="{lang}">' in page.text and 'action="/kontakt"' in page.text
    answer = await _send(client, lang, about=" rb-7k2m9-q4x8d ")
    assert answer.status_code == 200, answer.text
    assert title in answer.text and reply in answer.text
    reference = _REFERENCE.search(answer.text)
    assert reference, answer.text
    row = await broker.pool.fetchrow("SELECT * FROM customer_messages")
    assert row["reference"] == reference.group(1)
    assert row["language"] == lang and row["can_reply"] is True and row["closed_at"] is None
    opened = await customer_service.read(broker, row["id"], actor="test")
    assert opened.written == customer_service.Written(CANARY_TEXT, CANARY_EMAIL, "RB-7K2M9-Q4X8D")


async def test_without_a_reply_address_the_receipt_says_no_answer_can_come(
    make_client: Any, broker: BrokerContext
) -> None:
    client = await make_client()
    answer = await _send(client, "en", reply_email="")
    assert answer.status_code == 200
    assert "You gave no e-mail address, so we cannot answer you." in answer.text
    assert await broker.pool.fetchval("SELECT can_reply FROM customer_messages") is False


async def test_wrong_fields_are_each_named_and_everything_typed_is_kept(
    make_client: Any, broker: BrokerContext
) -> None:
    client = await make_client()
    typed = {"message": "Hei\x07 der, «sitat» & <b>fet</b>", "reply_email": "kari@", "about": "RB-123"}
    answer = await _send(client, "nb", **typed)
    assert answer.status_code == 422
    html = answer.text
    assert "Meldingen har et usynlig tegn som ikke kan sendes." in html
    assert "Skriv e-postadressen slik: navn@eksempel.no" in html
    assert "Referansen skal se slik ut: RB-7K2M9-Q4X8D." in html
    # Kept, escaped, and the refused character marked where it was (a page may not hold it).
    assert "Hei\ufffd der, «sitat» &amp; &lt;b&gt;fet&lt;/b&gt;</textarea>" in html and "\x07" not in html
    assert 'value="kari@"' in html and 'value="RB-123"' in html
    assert 'aria-invalid="true"' in html and 'href="#f-message"' in html
    assert await _stored(broker) == 0


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", "Write a message."),
        ("   \n\t ", "Write a message."),
        ("x" * (customer_service.MAX_MESSAGE_CHARS + 1), "at most 4000 characters"),
        ("bell\x1bescape", "invisible character"),
    ],
)
async def test_an_empty_too_long_or_control_character_message_is_refused(
    make_client: Any, broker: BrokerContext, message: str, expected: str
) -> None:
    client = await make_client()
    answer = await _send(client, "en", message=message)
    assert answer.status_code == 422
    assert expected in answer.text
    assert await _stored(broker) == 0


async def test_a_message_of_the_full_length_with_line_breaks_is_accepted(
    make_client: Any, broker: BrokerContext
) -> None:
    """A browser counts a line break as one character and sends two (CRLF): the limit counts it as one."""
    client = await make_client()
    lines = "\r\n".join(["y" * 99] * 40)  # 3960 characters as typed, 3999 as sent
    assert (await _send(client, message=lines)).status_code == 200
    assert await _stored(broker) == 1


async def test_the_honeypot_refuses_openly_and_stores_nothing(make_client: Any, broker: BrokerContext) -> None:
    client = await make_client()
    answer = await _send(client, "en", website="http://spam.example")
    assert answer.status_code == 400
    assert await _stored(broker) == 0


async def test_a_post_without_the_csrf_token_is_refused(make_client: Any, broker: BrokerContext) -> None:
    client = await make_client()
    await client.get("/kontakt")  # the cookie is there; the form field is not
    answer = await client.post("/kontakt", data={"message": CANARY_TEXT})
    assert answer.status_code == 403
    wrong = await client.post("/kontakt", data={"message": CANARY_TEXT, "_csrf_token": "0" * 64})
    assert wrong.status_code == 403
    assert await _stored(broker) == 0


async def test_past_the_limit_the_form_comes_back_with_the_text_and_nothing_is_stored(
    make_client: Any, broker: BrokerContext, redis_url: str
) -> None:
    client = await make_client(customer_service_rate=2, clock=_fixed)
    assert (await _send(client)).status_code == 200
    assert (await _send(client)).status_code == 200
    refused = await _send(client, "en", message="Mitt tredje spørsmål")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "Several messages were sent from here in a short time" in refused.text
    assert "Mitt tredje spørsmål</textarea>" in refused.text and f'value="{CANARY_EMAIL}"' in refused.text
    assert await _stored(broker) == 2
    # Its own counter, holding no address: the referral form's limit is untouched by messages.
    store = aioredis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in store.scan_iter("*-rate:*")]
        assert len(keys) == 1 and keys[0].startswith("contact-rate:"), keys
        assert await store.get(keys[0]) == b"3"
    finally:
        await store.aclose()


async def test_forms_with_mistakes_do_not_count_toward_the_limit(make_client: Any, broker: BrokerContext) -> None:
    client = await make_client(customer_service_rate=1, clock=_fixed)
    for _ in range(4):
        assert (await _send(client, reply_email="kari@")).status_code == 422
    assert (await _send(client)).status_code == 200
    assert (await _send(client)).status_code == 429
    assert await _stored(broker) == 1


async def test_the_stored_row_holds_no_plaintext_and_nothing_reaches_the_logs(
    make_client: Any, broker: BrokerContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await make_client()
    answer = await _send(client, "nb", about="RB-7K2M9-Q4X8D")
    assert answer.status_code == 200
    row = await broker.pool.fetchrow("SELECT * FROM customer_messages")
    everything = b"".join(
        bytes(value) if isinstance(value, bytes | bytearray | memoryview) else str(value).encode()
        for value in row.values()
    )
    as_text = await broker.pool.fetchval("SELECT row_to_json(m)::text FROM customer_messages m")
    for canary in (CANARY_TEXT, CANARY_EMAIL, "kanari", "Kanarifugl", "7K2M9"):
        assert canary.encode() not in everything and canary.lower().encode() not in everything.lower()
        assert canary.lower() not in as_text.lower()
        assert canary.lower() not in caplog.text.lower()
    assert bytes(row["message_ct"]).startswith(b"RBC2")  # the versioned format naming its key (0069)
    assert await broker.pool.fetchval("SELECT count(*) FROM audit_events WHERE details::text ILIKE '%kanari%'") == 0


async def test_the_ciphertext_is_bound_to_its_row(make_client: Any, broker: BrokerContext) -> None:
    """A message's ciphertext moved onto another row does not decrypt there."""
    client = await make_client()
    await _send(client)
    await _send(client, message="Et annet spørsmål")
    first, second = await broker.pool.fetch("SELECT id, message_ct FROM customer_messages ORDER BY received_at, id")
    await broker.pool.execute(
        "UPDATE customer_messages SET message_ct = $2 WHERE id = $1", second["id"], first["message_ct"]
    )
    with pytest.raises(ContactDecryptionFailed):
        await customer_service.read(broker, second["id"], actor="test")


async def test_the_receipt_of_a_referral_links_the_contact_page(
    make_client: Any, broker: BrokerContext, clinics: Any
) -> None:
    client = await make_client()
    for lang, words in (("nb", "Oss når du gjennom"), ("en", "You can reach us through the")):
        receipt = await send_form(client, ["fysio-oslo"], lang=lang)
        assert receipt.status_code == 200
        assert re.search(words + r' <a href="/kontakt">[^<]+</a>\.', receipt.text), receipt.text
