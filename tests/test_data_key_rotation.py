"""Data-key rotation (issue 25, items 2 and 3): every ciphertext names its key, the old key stays readable
as a fallback, look-ups search under every readable key, the re-encryption job is resumable and
idempotent, and the commands refuse what would lose data — against the real PostgreSQL.

A "restart" here is closing the BrokerContext and opening a new one on the same keys folder, which is what
a restarted api or worker process does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st
from litestar.middleware.csrf import generate_csrf_token

from referral_broker.cli.broker import main
from referral_broker.crypto import data_keys
from referral_broker.crypto.broker_keys import init_keys
from referral_broker.crypto.contact import ContactDecryptionFailed, ContactVault, DataKey, UnknownDataKey
from referral_broker.queue import jobs
from referral_broker.queue.worker import worker_options
from referral_broker.services import customer_service, data_key_rotation, intake, manage, operators, rights
from referral_broker.services.context import BrokerContext
from referral_broker.services.settings import Settings
from referral_broker.web.pages import CSRFCheck, csrf_config
from referral_protocol.referral import ContactCopy, ReferralRequest
from tests.conftest import RecordingDoorbell, enrol_clinic, referral_json
from tests.processes import program

EMAIL = "rotasjon@example.no"


def _legacy_rbc1(secret: bytes, plaintext: bytes, bound_to: bytes) -> bytes:
    """A contact copy exactly as the first format wrote it (before key ids), from the written-out recipe."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"referral-broker contact-aead v1").derive(secret)
    nonce = os.urandom(12)
    return b"RBC1" + nonce + AESGCM(key).encrypt(nonce, plaintext, b"RBC1" + bound_to)


# --- the format and the vault ---------------------------------------------------------------------------


def test_every_ciphertext_names_its_key_and_stays_bound_to_its_row() -> None:
    vault = ContactVault(ContactVault.generate_secret())
    ct = vault.encrypt(b"kari@example.no", bound_to=b"row-1")
    assert ct.startswith(b"RBC2" + vault.current.id)
    assert vault.key_of(ct) == vault.current.id
    assert vault.decrypt(ct, bound_to=b"row-1") == b"kari@example.no"
    with pytest.raises(ContactDecryptionFailed):
        vault.decrypt(ct, bound_to=b"row-2")
    flipped = ct[:4] + bytes([ct[4] ^ 1]) + ct[5:]  # another key id named: no key by that id
    with pytest.raises(UnknownDataKey):
        vault.decrypt(flipped, bound_to=b"row-1")


_DURING = ContactVault(ContactVault.generate_secret(), [ContactVault.generate_secret()])


@given(st.data())
def test_any_flipped_bit_of_a_contact_copy_is_refused(data: st.DataObject) -> None:
    ct = _DURING.encrypt(b'{"email": "kari@example.no"}', bound_to=b"row-1")
    at = data.draw(st.integers(0, len(ct) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = ct[:at] + bytes([ct[at] ^ (1 << bit)]) + ct[at + 1 :]
    with pytest.raises(ContactDecryptionFailed):
        _DURING.decrypt(flipped, bound_to=b"row-1")


def test_a_restore_of_the_first_format_reads_while_its_key_is_present() -> None:
    old, new = ContactVault.generate_secret(), ContactVault.generate_secret()
    legacy = _legacy_rbc1(old, b"ola@example.no", b"row-9")
    assert ContactVault(old).decrypt(legacy, bound_to=b"row-9") == b"ola@example.no"
    assert ContactVault(new, [old]).decrypt(legacy, bound_to=b"row-9") == b"ola@example.no"
    with pytest.raises(ContactDecryptionFailed):
        ContactVault(new).decrypt(legacy, bound_to=b"row-9")
    assert ContactVault(new, [old]).key_of(legacy) is None


def test_the_blind_index_bytes_of_an_existing_key_do_not_change() -> None:
    """Rows indexed before key ids existed must still be found: the index key and the HMAC input are as before."""
    secret = ContactVault.generate_secret()
    index_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"referral-broker blind-index v1").derive(
        secret
    )
    expected = hmac.new(index_key, b"email\x00kari@example.no", hashlib.sha256).digest()
    assert ContactVault(secret).blind_index("email", "kari@example.no") == expected


def test_new_values_use_the_new_key_and_the_old_key_still_reads_and_finds() -> None:
    old, new = ContactVault.generate_secret(), ContactVault.generate_secret()
    before = ContactVault(old)
    made_before = before.encrypt(b"x", bound_to=b"r")
    during = ContactVault(new, [old])
    assert during.current.id == DataKey(new).id and during.fallbacks[0].id == DataKey(old).id
    assert during.decrypt(made_before, bound_to=b"r") == b"x"
    made_during = during.encrypt(b"y", bound_to=b"r")
    assert during.key_of(made_during) == DataKey(new).id
    with pytest.raises(UnknownDataKey):
        before.decrypt(made_during, bound_to=b"r")  # a process never told of the new key
    assert during.blind_index("email", "a@b.no") == ContactVault(new).blind_index("email", "a@b.no")
    assert during.blind_indexes("email", "a@b.no") == [
        ContactVault(new).blind_index("email", "a@b.no"),
        before.blind_index("email", "a@b.no"),
    ]


def test_a_form_opened_before_the_rotation_still_posts_and_a_forged_token_does_not(tmp_path: Path) -> None:
    init_keys(tmp_path)
    settings = Settings.from_env({"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_KEYS_DIR": str(tmp_path)})
    old_config = csrf_config(settings)
    token = generate_csrf_token(old_config.secret)
    data_keys.add_key(tmp_path)
    new_config = csrf_config(settings)
    assert new_config.secret != old_config.secret

    async def app(*_: object) -> None: ...

    during = CSRFCheck(app, new_config, fallback_secrets=[old_config.secret])
    assert during._decode_csrf_token(token) == token[:64]
    assert during._decode_csrf_token(generate_csrf_token(new_config.secret)) is not None
    assert during._decode_csrf_token(generate_csrf_token("not our secret")) is None
    after = CSRFCheck(app, new_config)  # the old key retired
    assert after._decode_csrf_token(token) is None


# --- the keys folder ------------------------------------------------------------------------------------


def test_rotate_keeps_the_old_key_as_a_fallback_and_a_second_rotation_is_refused(tmp_path: Path) -> None:
    init_keys(tmp_path)
    first = data_keys.load_vault(tmp_path).current.id_hex
    done = data_keys.add_key(tmp_path)
    assert done.old_key_id == first
    assert (tmp_path / f"data-{first}.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data.key").stat().st_mode & 0o777 == 0o600
    vault = data_keys.load_vault(tmp_path)
    assert vault.current.id_hex == done.new_key_id and [k.id_hex for k in vault.fallbacks] == [first]
    files = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(data_keys.RotationUnfinished, match=r"unfinished.*reencrypt.*retire-data"):
        data_keys.add_key(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # nothing half-done
    assert data_keys.remove_fallbacks(tmp_path) == [first]
    assert data_keys.load_vault(tmp_path).fallbacks == ()


def test_a_rotation_cut_short_between_its_two_files_loads_as_no_rotation_and_can_be_run_again(tmp_path: Path) -> None:
    init_keys(tmp_path)
    old = data_keys.load_vault(tmp_path).current
    (tmp_path / f"data-{old.id_hex}.key").write_bytes((tmp_path / "data.key").read_bytes())  # first step only
    vault = data_keys.load_vault(tmp_path)
    assert vault.current.id == old.id and vault.fallbacks == ()
    done = data_keys.add_key(tmp_path)
    assert done.old_key_id == old.id_hex
    assert [k.id for k in data_keys.load_vault(tmp_path).fallbacks] == [old.id]


def test_a_missing_or_wrong_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(data_keys.DataKeyError, match=r"data\.key is missing; run `referral-broker keys init`"):
        data_keys.load_vault(tmp_path)
    init_keys(tmp_path)
    other = DataKey(ContactVault.generate_secret())
    wrong = tmp_path / f"data-{'0' * 16}.key"
    wrong.write_text(base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(data_keys.DataKeyError, match=r"holds data key [0-9a-f]{16}, not 0{16}: a wrong or renamed"):
        data_keys.load_vault(tmp_path)
    wrong.unlink()
    (tmp_path / f"data-{other.id_hex}.key").write_text("not base64!")
    with pytest.raises(data_keys.DataKeyError, match="is not a data key: expected one line of base64"):
        data_keys.load_vault(tmp_path)
    (tmp_path / f"data-{other.id_hex}.key").write_text(base64.b64encode(b"short").decode())
    with pytest.raises(data_keys.DataKeyError, match="holds 5 bytes, a data key has 32"):
        data_keys.load_vault(tmp_path)
    (tmp_path / f"data-{other.id_hex}.key").unlink()
    (tmp_path / "data-old.key").write_text("x")
    with pytest.raises(data_keys.DataKeyError, match="not named like a fallback data key"):
        data_keys.load_vault(tmp_path)


def test_a_read_only_keys_folder_is_refused_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_keys(tmp_path)
    tmp_path.chmod(0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root: as on a read-only mount, which refuses root too
            monkeypatch.setattr(data_keys.os, "access", lambda path, mode: False)
        with pytest.raises(data_keys.DataKeyError, match=r"not writable.*copy it to a writable folder"):
            data_keys.add_key(tmp_path)
    finally:
        tmp_path.chmod(0o700)
    assert data_keys.load_vault(tmp_path).fallbacks == ()


# --- the job and the look-ups, against PostgreSQL ----------------------------------------------------------


class Keys:
    """A keys folder of this test's own (the shared one must not rotate), and contexts opened on it."""

    def __init__(self, folder: Path, settings: Settings) -> None:
        self.folder = folder
        self.settings = msgspec.structs.replace(settings, keys_dir=folder)
        self.open: list[BrokerContext] = []

    async def start(self) -> BrokerContext:
        ctx = await BrokerContext.open(self.settings, RecordingDoorbell(), pool_size=3)
        self.open.append(ctx)
        return ctx

    async def restart(self, ctx: BrokerContext) -> BrokerContext:
        await ctx.close()
        self.open.remove(ctx)
        return await self.start()


@pytest.fixture
async def keys(settings: Settings, tmp_path: Path) -> AsyncIterator[Keys]:
    folder = tmp_path / "keys"
    init_keys(folder)
    k = Keys(folder, settings)
    yield k
    for ctx in k.open:
        await ctx.close()


class Outbox:
    def __init__(self) -> None:
        self.codes: list[str] = []

    async def send(self, channel: str, destination: str, code: str, minutes: int) -> None:
        self.codes.append(code)


async def _submit(ctx: BrokerContext, email: str = EMAIL, key: str | None = None) -> tuple[str, str]:
    request = msgspec.convert(referral_json(["rot-klinikk"], email=email), ReferralRequest)
    receipt, _ = await intake.submit_once(ctx, request, idempotency_key=key)
    return receipt.reference, receipt.manage_url.rsplit("/", 1)[1]


async def _sign_in(ctx: BrokerContext, email: str = EMAIL) -> str:
    outbox = Outbox()
    code_id = await rights.request_code(ctx, outbox, "email", email)
    token, _ = await rights.verify_code(ctx, str(code_id), outbox.codes[-1])
    return token


async def _references_seen(ctx: BrokerContext, token: str) -> set[str]:
    session = await rights.session_of(ctx, token)
    assert session is not None
    return {v.reference for v in await rights.overview(ctx, session)}


async def _prefixes(ctx: BrokerContext) -> set[bytes]:
    found = await ctx.pool.fetch(
        """SELECT substring(contact_ct from 1 for 12) AS p FROM referrals WHERE contact_ct IS NOT NULL
           UNION SELECT substring(totp_secret_ct from 1 for 12) FROM operators
           UNION SELECT substring(contact_ct from 1 for 12) FROM rights_codes WHERE contact_ct IS NOT NULL"""
    )
    return {bytes(r["p"]) for r in found}


async def test_rotation_reencrypts_everything_and_patients_find_their_referrals_throughout(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    await operators.create_operator(ctx, "rotator", "operator", "a long operator password", actor="test")
    first = {(await _submit(ctx))[0] for _ in range(3)}
    other, _ = await _submit(ctx, email="noen.andre@example.no")
    session_before = await _sign_in(ctx)
    assert await _references_seen(ctx, session_before) == first
    old_id = ctx.keys.vault.current.id

    rotation = await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    assert ctx.keys.vault.current.id_hex == rotation.new_key_id
    assert [k.id for k in ctx.keys.vault.fallbacks] == [old_id]
    # Before the job: old rows are found by their old index, new ones by the new; a session from before sees all.
    during, _ = await _submit(ctx)
    assert await _references_seen(ctx, session_before) == first | {during}
    assert await _references_seen(ctx, await _sign_in(ctx)) == first | {during}
    left = await data_key_rotation.left(ctx)
    assert left["referrals"] == 4 and left["operators"] == 1 and left["rights_codes"] == 1

    seen: list[data_key_rotation.Progress] = []
    run = await data_key_rotation.reencrypt(ctx, batch_size=2, progress=seen.append)
    assert run.rewritten == 6 and run.left == 0 and run.unreadable == 0 and run.finished
    assert [(p.table, p.rewritten) for p in seen][:2] == [("referrals", 2), ("referrals", 4)]
    assert await _prefixes(ctx) == {ctx.keys.vault.current_prefix}
    again = await data_key_rotation.reencrypt(ctx)
    assert again.rewritten == 0 and again.left == 0  # idempotent

    removed = await data_key_rotation.retire(ctx, keys.folder)
    assert removed == [old_id.hex()]
    ctx = await keys.restart(ctx)
    assert ctx.keys.vault.fallbacks == ()
    # Only the new key now: every copy opens, every index finds, the session from before still reaches all.
    assert await _references_seen(ctx, session_before) == first | {during}
    assert await _references_seen(ctx, await _sign_in(ctx)) == first | {during}
    assert await _references_seen(ctx, await _sign_in(ctx, "noen.andre@example.no")) == {other}
    for row in await ctx.pool.fetch("SELECT id, contact_ct FROM referrals"):
        copy = msgspec.json.decode(
            ctx.keys.vault.decrypt(row["contact_ct"], bound_to=row["id"].bytes), type=ContactCopy
        )
        assert copy.email in {EMAIL, "noen.andre@example.no"}
    actions = [r["action"] for r in await ctx.pool.fetch("SELECT action FROM audit_events ORDER BY id")]
    assert [a for a in actions if a.startswith("data_key.")] == [
        "data_key.rotated",
        "data_key.reencrypted",
        "data_key.retired",
    ]


async def test_no_manage_link_stops_working_and_an_idempotent_repeat_finds_its_first_receipt(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    keyed_ref, keyed_token = await _submit(ctx, key="client-retry-key-0001")
    plain_ref, plain_token = await _submit(ctx)

    await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    # A retry during the overlap: the same referral, the same private link (derived under the key that made it).
    assert await _submit(ctx, key="client-retry-key-0001") == (keyed_ref, keyed_token)
    await data_key_rotation.reencrypt(ctx)
    assert await _submit(ctx, key="client-retry-key-0001") == (keyed_ref, keyed_token)
    await data_key_rotation.retire(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    for reference, token in [(keyed_ref, keyed_token), (plain_ref, plain_token)]:
        view = await manage.look_up(ctx, token)
        assert view is not None and view.referral.reference == reference
    fresh_ref, fresh_token = await _submit(ctx, key="client-retry-key-0002")
    assert await _submit(ctx, key="client-retry-key-0002") == (fresh_ref, fresh_token)


async def test_retire_and_a_second_rotation_are_refused_while_anything_is_under_the_old_key(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    await _submit(ctx)
    assert await data_key_rotation.retire(ctx, keys.folder) == []  # no rotation: nothing to retire
    await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    with pytest.raises(data_key_rotation.RetireRefused, match=r"1 stored value\(s\) are not yet under.*referrals: 1"):
        await data_key_rotation.retire(ctx, keys.folder)
    assert len(ctx.keys.vault.fallbacks) == 1 and len(data_keys.load_vault(keys.folder).fallbacks) == 1
    refused = await ctx.pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'data_key.retire_refused'")
    assert refused == 1
    with pytest.raises(data_keys.RotationUnfinished):
        await data_key_rotation.rotate(ctx, keys.folder)
    rotated = await ctx.pool.fetchval("SELECT count(*) FROM audit_events WHERE action = 'data_key.rotated'")
    assert rotated == 1  # the refused second rotation left no event


async def test_a_process_without_the_new_key_rewrites_nothing_it_cannot_read(keys: Keys) -> None:
    """A worker not restarted after a rotation meets rows under the new key: it leaves them, and says so."""
    stale = await keys.start()
    await enrol_clinic(stale, "rot-klinikk")
    await data_key_rotation.rotate(stale, keys.folder)
    fresh = await keys.start()
    await _submit(fresh)
    before = await fresh.pool.fetchval("SELECT contact_ct FROM referrals")
    run = await data_key_rotation.reencrypt(stale)
    assert run.rewritten == 0 and run.unreadable == 1 and run.left == 1
    assert await fresh.pool.fetchval("SELECT contact_ct FROM referrals") == before


async def test_the_job_stops_at_its_time_budget_and_the_next_run_resumes(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    for _ in range(5):
        await _submit(ctx)
    await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    first = await data_key_rotation.reencrypt(ctx, batch_size=1, budget_seconds=0.0)
    assert not first.finished and first.rewritten == 1 and first.left == 4
    second = await data_key_rotation.reencrypt(ctx, batch_size=1)
    assert second.finished and second.rewritten == 4 and second.left == 0


async def test_the_worker_reencrypts_every_hour_and_says_so_in_the_audit_trail(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    for _ in range(3):
        await _submit(ctx)
    await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    (cron,) = (c for c in worker_options(ctx.settings)["cron_jobs"] if c.name == "reencrypt_data")
    assert cron.coroutine is jobs.reencrypt_data and cron.minute == {47} and cron.unique
    assert await jobs.reencrypt_data({"broker": ctx}) == 3
    assert await jobs.reencrypt_data({"broker": ctx}) == 0
    assert set((await data_key_rotation.left(ctx)).values()) == {0}
    actors = await ctx.pool.fetch("SELECT actor FROM audit_events WHERE action = 'data_key.reencrypted'")
    assert [r["actor"] for r in actors] == ["worker"]  # a run with nothing to do leaves no event


# --- the commands, as real processes ------------------------------------------------------------------------


def _env(keys: Keys) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": keys.settings.database_url,
        "REDIS_URL": keys.settings.redis_url,
        "REFERRAL_BROKER_KEYS_DIR": str(keys.folder),
        **{k: v for k, v in os.environ.items() if k.startswith("COVERAGE_") or k == "PYTHONPATH"},
    }


def _cli(keys: Keys, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("referral-broker"), "keys", *args], env=_env(keys), capture_output=True, text=True, timeout=60
    )


async def _copies(ctx: BrokerContext, emails: list[str]) -> None:
    """A referral per address, cloned from one submitted one, each with its own contact copy and indexes."""
    row = await ctx.pool.fetchrow("SELECT * FROM referrals LIMIT 1")
    copy = msgspec.json.decode(ctx.keys.vault.decrypt(row["contact_ct"], bound_to=row["id"].bytes), type=ContactCopy)
    vault = ctx.keys.vault
    async with ctx.pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO referrals (id, reference, created_at, consent_version, consent_text_sha256, consent_at,
                                      contact_ct, email_bidx, phone_bidx)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    (rid := uuid.uuid4()),
                    f"K{i:07d}",
                    row["created_at"],
                    row["consent_version"],
                    row["consent_text_sha256"],
                    row["consent_at"],
                    vault.encrypt(msgspec.json.encode(msgspec.structs.replace(copy, email=e)), bound_to=rid.bytes),
                    vault.blind_index("email", e),
                    vault.blind_index("phone", copy.phone),
                )
                for i, e in enumerate(emails)
            ],
        )


async def test_the_commands_refuse_clearly_and_a_killed_reencryption_loses_nothing(keys: Keys) -> None:
    ctx = await keys.start()
    await enrol_clinic(ctx, "rot-klinikk")
    await _submit(ctx)
    await _copies(ctx, [EMAIL] * 20 + [f"klon{i}@example.no" for i in range(1500)])  # a job long enough to kill
    session = await _sign_in(ctx)
    total = len(await _references_seen(ctx, session))
    assert total == 21

    rotated = _cli(keys, "rotate-data")
    assert rotated.returncode == 0, rotated.stderr
    assert "is now current" in rotated.stdout and "then `referral-broker keys reencrypt`" in rotated.stdout
    twice = _cli(keys, "rotate-data")
    assert twice.returncode == 2 and twice.stdout == ""
    assert (
        twice.stderr.startswith("referral-broker: a data-key rotation is unfinished")
        and "Traceback" not in twice.stderr
    )
    early = _cli(keys, "retire-data")
    assert early.returncode == 2 and "run `referral-broker keys reencrypt` until it reports 0 left" in early.stderr
    status = _cli(keys, "data-status")
    assert "not yet under the current key: referrals 1521" in status.stdout

    # Kill the job mid-run (SIGKILL, no clean-up): every row must still open, and the next run finishes the work.
    job = subprocess.Popen(
        [program("referral-broker"), "keys", "reencrypt", "--batch", "1"],
        env=_env(keys),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert job.stderr is not None
    for _ in range(20):  # a few batches in
        assert "re-encrypted" in job.stderr.readline()
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=10)
    assert job.returncode == -signal.SIGKILL
    ctx = await keys.restart(ctx)
    left = (await data_key_rotation.left(ctx))["referrals"]
    assert 0 < left < 1521, "the job was not killed mid-run"
    for row in await ctx.pool.fetch("SELECT id, contact_ct FROM referrals"):
        ctx.keys.vault.decrypt(row["contact_ct"], bound_to=row["id"].bytes)
    assert len(await _references_seen(ctx, session)) == total

    started = time.monotonic()
    resumed = _cli(keys, "reencrypt", "--batch", "100")
    assert resumed.returncode == 0, resumed.stderr
    assert f"re-encrypted {left + 1} stored value(s)" in resumed.stdout  # the rest, and the session's code
    assert "; 0 left" in resumed.stdout and f"referrals: {left} of {left}" in resumed.stderr
    assert "keys retire-data` may now remove it" in resumed.stdout
    assert time.monotonic() - started < 30
    assert len(await _references_seen(ctx, session)) == total
    retired = _cli(keys, "retire-data")
    assert retired.returncode == 0 and "retired data key(s)" in retired.stdout, retired.stderr
    assert [p.name for p in keys.folder.glob("data-*.key")] == []
    after = _cli(keys, "reencrypt")
    assert after.returncode == 0 and after.stdout.endswith(
        f"re-encrypted 0 stored value(s) under data key {data_keys.load_vault(keys.folder).current.id_hex}; 0 left\n"
    )
    ctx = await keys.restart(ctx)
    assert len(await _references_seen(ctx, session)) == total
    # The audit trail names key ids, never key material.
    audit = " ".join(str(r) for r in await ctx.pool.fetch("SELECT * FROM audit_events"))
    assert "data_key.rotated" in audit and "data_key.retired" in audit
    assert (keys.folder / "data.key").read_text().strip() not in audit


def test_a_missing_key_file_is_one_clear_line(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(tmp_path))
    init_keys(tmp_path)
    (tmp_path / "data.key").unlink()
    assert main(["keys", "rotate-data"]) == 2
    err = capsys.readouterr().err
    assert err == f"referral-broker: {tmp_path / 'data.key'} is missing; run `referral-broker keys init` first\n"
    assert list(tmp_path.glob("data*")) == []


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_wrong_fallback_key_file_stops_the_servers_with_one_line(
    command: str,
    tmp_path: Path,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFERRAL_BROKER_KEYS_DIR", str(tmp_path))
    init_keys(tmp_path)
    (tmp_path / f"data-{'a' * 16}.key").write_text(base64.b64encode(os.urandom(32)).decode())
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"referral-broker: {tmp_path}/data-{'a' * 16}.key holds data key ")
    assert "a wrong or renamed file" in err and "Traceback" not in err


@pytest.mark.parametrize("batch", ["0", "-5", "many", "10001"])
def test_a_wrong_batch_size_is_refused_before_anything_runs(batch: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["keys", "reencrypt", "--batch", batch])
    assert exit_.value.code == 2
    assert "is not a batch size: give a whole number from 1 to 10000" in capsys.readouterr().err


class _Replies:
    async def send_reply(self, recipient: str, subject: str, text: str) -> None:
        pass


async def test_customer_service_messages_and_answers_are_reencrypted_and_read_after_retirement(keys: Keys) -> None:
    """Customer service (issue 22) keeps its messages under the data key too: the job walks them, and after the
    old key is retired an operator still reads the message and its answer."""
    ctx = await keys.start()
    written = customer_service.Written("Hvordan endrer jeg e-posten?", reply_to=EMAIL, about=None)
    reference = await customer_service.receive(ctx, written, language="nb")
    message_id = (await customer_service.waiting(ctx))[0].id
    await customer_service.answer(
        ctx, message_id, "Bruk lenken på kvitteringen.", by="olga", actor="t", sender=_Replies()
    )

    await data_key_rotation.rotate(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    left = await data_key_rotation.left(ctx)
    assert left["customer_messages"] == 1 and left["customer_answers"] == 1
    run = await data_key_rotation.reencrypt(ctx)
    assert run.left == 0 and run.unreadable == 0
    row = await ctx.pool.fetchrow("SELECT message_ct, answer_ct FROM customer_messages WHERE id = $1", message_id)
    assert bytes(row["message_ct"]).startswith(ctx.keys.vault.current_prefix)
    assert bytes(row["answer_ct"]).startswith(ctx.keys.vault.current_prefix)

    await data_key_rotation.retire(ctx, keys.folder)
    ctx = await keys.restart(ctx)
    opened = await customer_service.read(ctx, message_id, actor="t")
    assert opened.facts.reference == reference
    assert opened.written.message == "Hvordan endrer jeg e-posten?" and opened.written.reply_to == EMAIL
    assert [a.text for a in opened.answers] == ["Bruk lenken på kvitteringen."]
