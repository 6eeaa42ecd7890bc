"""The data-key half of the compromise drill (issue 25, item 4) through the real programs.

`referral-broker serve` and `worker` run against this run's PostgreSQL and Redis while the operator
follows docs/operations.md ("Rotating the data key") with the real commands: rotate-data, restart,
reencrypt (with patients using /rights while it runs), retire-data, restart. No patient loses sight of a
referral, no form opened before the rotation is refused, every manage link still opens, the clinic still
receives everything, and the audit trail records each step without key material.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from referral_broker.crypto.broker_keys import load_keys
from tests.conftest import Servers, referral_json
from tests.e2e.test_pipeline_processes import Broker, _pg_dump, started_broker
from tests.e2e.test_rights_processes import Browser, _csrf, _sign_in
from tests.ops.notice_sinks import MailSink, mail_sink  # noqa: F401 - the fixture
from tests.processes import Program, program, run, wait_for_http, wait_for_value

pytestmark = pytest.mark.e2e

EMAIL = "zyx.rotation.canary@example.no"
OTHERS = 300  # other patients' referrals, so the job runs long enough to be met mid-way


@pytest.fixture
def stack(servers: Servers, clean_db: str, redis_url: str, tmp_path: Path, mail_sink: MailSink) -> Iterator[Broker]:  # noqa: F811
    with started_broker(clean_db, redis_url, tmp_path, {"REFERRAL_BROKER_SMTP_URL": mail_sink.url}) as b:
        try:
            yield b
        finally:
            b.server.stop()  # the server _restart started; started_broker stops only the first one


def _restart(stack: Broker) -> None:
    """What the operator does after changing the keys folder: restart the api and the worker."""
    stack.server.stop()
    stack.worker.stop()
    port = stack.url.rsplit(":", 1)[1]
    stack.server = Program(
        [program("referral-broker"), "serve", "--port", port], stack.env, stack.folder / "server.log"
    ).start()
    wait_for_http(f"{stack.url}/healthz", stack.server)
    stack.start_worker()


def _submit(stack: Broker) -> tuple[str, str]:
    response = httpx.post(f"{stack.url}/api/v1/referrals", json=referral_json(["klinikk-a"], email=EMAIL), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["reference"], response.json()["manage_url"]


async def _add_other_patients(stack: Broker) -> None:
    """Referrals of other patients, each with its own contact copy under the key the folder holds now."""
    vault = load_keys(Path(stack.env["REFERRAL_BROKER_KEYS_DIR"])).vault
    conn = await asyncpg.connect(stack.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM referrals LIMIT 1")
        copy = vault.decrypt(row["contact_ct"], bound_to=row["id"].bytes)
        await conn.executemany(
            """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at,
                                      contact_ct, email_bidx, phone_bidx)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    (rid := uuid.uuid4()),
                    f"O{i:07d}",
                    row["created_at"],
                    row["consent_version"],
                    row["consent_text_sha256"],
                    row["consent_at"],
                    vault.encrypt(copy.replace(EMAIL.encode(), f"other{i}@example.no".encode()), bound_to=rid.bytes),
                    vault.blind_index("email", f"other{i}@example.no"),
                    vault.blind_index("phone", f"+47{90000000 + i}"),
                )
                for i in range(OTHERS)
            ],
        )
    finally:
        await conn.close()


def _listed(browser: Browser) -> str:
    page = browser.get("/rights/requests")
    assert page.status_code == 200, page.status_code
    return page.text


async def test_the_data_key_is_rotated_while_patients_use_their_rights(stack: Broker, mail_sink: MailSink) -> None:  # noqa: F811
    stack.clinic("klinikk-a")
    stack.start_worker()
    mine = [_submit(stack) for _ in range(3)]
    await _add_other_patients(stack)
    keys_dir = Path(stack.env["REFERRAL_BROKER_KEYS_DIR"])
    old_key = (keys_dir / "data.key").read_text().strip()

    with Browser(stack.url) as signed_in, Browser(stack.url) as form_open:
        _sign_in(signed_in, mail_sink, EMAIL)
        assert all(ref in _listed(signed_in) for ref, _ in mine)
        start_page = form_open.get("/rights")  # a patient who opened the form and has not sent it yet
        assert start_page.status_code == 200

        # 1. A new data key; the old one stays readable. A second rotation and an early retire are refused.
        rotated = run([program("referral-broker"), "keys", "rotate-data"], stack.env)
        assert "is now current" in rotated.stdout
        again = run([program("referral-broker"), "keys", "rotate-data"], stack.env, check=False)
        assert again.returncode == 2 and "rotation is unfinished" in again.stderr
        _restart(stack)

        # The form opened before the restart still posts; the session from before still sees everything.
        before = len(mail_sink.messages)
        asked = form_open.post(
            "/rights/code", data={"_csrf_token": _csrf(start_page.text), "channel": "email", "email": EMAIL}
        )
        assert asked.status_code == 200, asked.text
        assert len(mail_sink.messages) == before + 1
        mine.append(_submit(stack))  # made under the new key
        assert all(ref in _listed(signed_in) for ref, _ in mine)
        early = run([program("referral-broker"), "keys", "retire-data"], stack.env, check=False)
        assert early.returncode == 2 and "not yet under the current data key" in early.stderr

        # 2. Re-encrypt everything while the patient keeps reading their list.
        failures: list[str] = []
        looked = 0
        done = threading.Event()

        def patient() -> None:
            nonlocal looked
            while not done.is_set():
                text = _listed(signed_in)
                looked += 1
                failures.extend(ref for ref, _ in mine if ref not in text)

        reader = threading.Thread(target=patient)
        reader.start()
        try:
            job = run([program("referral-broker"), "keys", "reencrypt", "--batch", "5"], stack.env)
        finally:
            done.set()
            reader.join(timeout=30)
        assert "; 0 left" in job.stdout
        assert "referrals: " in job.stderr  # progress was shown
        assert looked >= 2 and failures == []

        # 3. Retire the old key, restart: only the new key exists anywhere.
        retired = run([program("referral-broker"), "keys", "retire-data"], stack.env)
        assert "retired data key(s)" in retired.stdout
        assert [p.name for p in keys_dir.glob("data-*.key")] == []
        _restart(stack)

        assert all(ref in _listed(signed_in) for ref, _ in mine)
    with Browser(stack.url) as fresh:
        _sign_in(fresh, mail_sink, EMAIL)
        assert all(ref in _listed(fresh) for ref, _ in mine)
    for reference, manage_url in mine:
        page = httpx.get(manage_url.replace("https://broker.test", stack.url), timeout=10)
        assert page.status_code == 200 and reference in page.text

    # Nothing lost: the clinic receives all four referrals.
    await wait_for_value(stack.database_url, "SELECT count(*) FROM deliveries WHERE status = 'available'", 4)
    code, output = stack.pull(stack.folder / "clinics" / "klinikk-a", stack.folder / "inbox")
    assert code == 0, output
    assert sorted(p.stem for p in (stack.folder / "inbox").glob("*.json")) == sorted(ref for ref, _ in mine)

    vault = load_keys(keys_dir).vault
    conn = await asyncpg.connect(stack.database_url)
    try:
        prefixes = await conn.fetch(
            "SELECT DISTINCT substring(contact_ct from 1 for 12) AS p FROM referrals WHERE contact_ct IS NOT NULL"
        )
        assert {bytes(r["p"]) for r in prefixes} == {vault.current_prefix}
        actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_events ORDER BY id")]
        steps = [a for a in actions if a.startswith("data_key.")]
        assert steps == ["data_key.rotated", "data_key.retire_refused", "data_key.reencrypted", "data_key.retired"]
    finally:
        await conn.close()
    dump = _pg_dump(stack.database_url)  # the whole database, as text: no data key in it, old or new
    assert old_key not in dump and (keys_dir / "data.key").read_text().strip() not in dump
