"""The ceilings: the work that cannot be avoided, with nothing else around it.

Intake: per referral, seal the padded payload to each chosen clinic's keys and sign each envelope, AEAD
the contact copy, compute its blind indexes and the manage-token hash, and commit the store's own
one-statement transaction with the same rows (`store.referrals.insert_referral`). No HTTP, no
validation, no lookup of the clinics, no doorbell. As many processes as the api has, each keeping
`concurrency` referrals in flight, so the commits' waits for the disk overlap as they do in the
server (one after another, a commit's fsync would be the ceiling). Pull: verify and decrypt
(open_referral) only, in one process, as the clinic tool does.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import time
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import msgspec

from referral_broker.crypto.broker_keys import BrokerKeys, load_keys
from referral_broker.domain.ids import new_id
from referral_broker.domain.reference import new_reference
from referral_broker.services.ports import JOB_DISPATCH
from referral_broker.store import clinics as clinic_store
from referral_broker.store import referrals as referral_store
from referral_clinic.envelope_check import ClinicKeys, open_referral
from referral_clinic.keystore import ClinicDir
from referral_protocol import envelope
from referral_protocol.consent import CONSENT_VERSION, consent_text_sha256
from referral_protocol.enrolment import InboxItem
from referral_protocol.referral import (
    REFERRAL_PAYLOAD_FORMAT,
    ContactCopy,
    Need,
    Patient,
    ReferralPayload,
    SealedConsent,
)

_encode = msgspec.json.Encoder().encode


def new_referral(
    keys: BrokerKeys, targets: list[clinic_store.SealingTarget], body: bytes, now: datetime
) -> referral_store.NewReferral:
    """What intake stores for one request, built with the same crypto calls and the same formats."""
    request = json.loads(body)
    patient = Patient(
        name=request["patient"]["name"],
        email=request["patient"]["email"],
        phone="+47" + request["patient"]["phone"],
        birth_date=date.fromisoformat(request["patient"]["birth_date"]),
    )
    need = Need(description=request["need"]["description"], category=request["need"]["category"])
    referral_id = new_id(now)
    reference = new_reference()
    consent = SealedConsent(version=CONSENT_VERSION, accepted_at=now, text_sha256=consent_text_sha256())
    deliveries = []
    for target in targets:
        delivery_id = new_id(now)
        payload = ReferralPayload(
            format=REFERRAL_PAYLOAD_FORMAT,
            delivery_id=str(delivery_id),
            reference=reference,
            clinic=target.slug,
            submitted_at=now,
            patient=patient,
            need=need,
            consent=consent,
        )
        sealed = envelope.seal(
            _encode(payload),
            kind="referral",
            delivery_id=str(delivery_id),
            reference=reference,
            clinic=target.slug,
            issued_at=now,
            recipient_keys=target.encryption_keys,
            signer=keys.signer,
        )
        deliveries.append(
            referral_store.NewDelivery(
                id=delivery_id,
                clinic_id=target.id,
                envelope=sealed.data,
                envelope_sha256=hashlib.sha256(sealed.data).digest(),
                recipient_keys=[r.key_id for r in sealed.body.recipients],
            )
        )
    contact = ContactCopy(
        name=patient.name,
        email=patient.email,
        phone=patient.phone,
        birth_date=patient.birth_date,
        category=need.category,
    )
    return referral_store.NewReferral(
        id=referral_id,
        reference=reference,
        created_at=now,
        consent_version=consent.version,
        consent_text_sha256=consent.text_sha256,
        contact_ct=keys.vault.encrypt(_encode(contact), bound_to=referral_id.bytes),
        email_bidx=keys.vault.blind_index("email", patient.email.lower()),
        phone_bidx=keys.vault.blind_index("phone", patient.phone),
        manage_token_hash=hashlib.sha256(secrets.token_urlsafe(32).encode()).digest(),
        deliveries=deliveries,
    )


async def intake_ceiling(
    database_url: str, keys_dir: Path, clinics: list[str], bodies: list[bytes], *, seconds: float, concurrency: int
) -> dict[str, float]:
    """Referrals per second for the unavoidable work in this process, `concurrency` at a time.

    Also times the work of one referral alone (crypto, then the commit), one after another first.
    """
    keys = load_keys(keys_dir)
    pool = await asyncpg.create_pool(database_url, min_size=concurrency, max_size=concurrency)
    try:
        targets = await clinic_store.sealing_targets(pool, clinics)
        crypto = db = 0.0
        alone = 50
        async with pool.acquire() as conn:
            for i in range(alone):
                t0 = time.perf_counter()
                new = new_referral(keys, targets, bodies[i % len(bodies)], datetime.now(UTC))
                t1 = time.perf_counter()
                await referral_store.insert_referral(conn, new, dispatch_job=JOB_DISPATCH)
                crypto += t1 - t0
                db += time.perf_counter() - t1
        done = 0
        deadline = time.perf_counter() + seconds

        async def one_after_another(start: int) -> None:
            nonlocal done
            i = start
            async with pool.acquire() as own:  # one connection each: no pool bookkeeping in the ceiling
                while time.perf_counter() < deadline:
                    new = new_referral(keys, targets, bodies[i % len(bodies)], datetime.now(UTC))
                    await referral_store.insert_referral(own, new, dispatch_job=JOB_DISPATCH)
                    done += 1
                    i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(one_after_another(s) for s in range(concurrency)))
        elapsed = time.perf_counter() - t0
        # The outbox rows these made are not for the worker: mark them done so nothing dispatches them.
        await pool.execute("UPDATE outbox SET done_at = now(), outcome = 'bench-ceiling' WHERE done_at IS NULL")
    finally:
        await pool.close()
    return {
        "referrals_per_s": done / elapsed,
        "alone_per_s": alone / (crypto + db),
        "crypto_ms": crypto / alone * 1000,
        "transaction_ms": db / alone * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    """One ceiling process: `python -m bench.ceiling --database-url U --keys-dir K --bodies F --seconds S`."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--keys-dir", type=Path, required=True)
    parser.add_argument("--bodies", type=Path, required=True)
    parser.add_argument("--clinics", default="bench-a,bench-b")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    bodies = [line for line in args.bodies.read_bytes().splitlines() if line.strip()]
    result = asyncio.run(
        intake_ceiling(
            args.database_url,
            args.keys_dir,
            args.clinics.split(","),
            bodies,
            seconds=args.seconds,
            concurrency=args.concurrency,
        )
    )
    print(json.dumps(result))
    return 0


def clinic_keys(folder: Path, passphrase: str) -> ClinicKeys:
    clinic = ClinicDir(folder)
    config = clinic.load_config()
    secrets_ = clinic.unlock(passphrase, config)
    return ClinicKeys(
        slug=config.slug, broker_key=config.broker_public_key, private_keys=list(secrets_.encryption_secrets)
    )


def pull_ceiling(items: list[InboxItem], keys: ClinicKeys) -> dict[str, float]:
    """Referrals per second for verify + decrypt (and the checks that come with opening) alone."""
    t0 = time.perf_counter()
    for item in items:
        open_referral(item, keys)
    elapsed = time.perf_counter() - t0
    return {"referrals_per_s": len(items) / elapsed, "n": len(items)}


if __name__ == "__main__":
    raise SystemExit(main())
