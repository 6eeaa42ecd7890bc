"""The stored values a data key encrypts, found by whether they are under the current key yet.

Five places hold data-key ciphertext: each referral's contact copy (with its two blind indexes), each operator's
TOTP secret, each rights code's address, and each customer-service message and its answers. A value is under the
current key when its first bytes are `RBC2` + that key's id (crypto/contact.py); anything else (another key id, or
the first format) is left to re-encrypt. Batches walk each table by primary key (keyset pagination), and each
update is compare-and-set on the old ciphertext, so a value changed meanwhile (a correction, an anonymisation) is
left as that change made it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from referral_broker.store.pool import Connection, Executor

#: place -> (table, its ciphertext column); fixed names, never from input.
TABLES = {
    "referrals": ("referrals", "contact_ct"),
    "operators": ("operators", "totp_secret_ct"),
    "rights_codes": ("rights_codes", "contact_ct"),
    "customer_messages": ("customer_messages", "message_ct"),
    "customer_answers": ("customer_messages", "answer_ct"),
}


@dataclass(frozen=True)
class StoredValue:
    id: uuid.UUID
    ciphertext: bytes


def _not_under(column: str, prefix_param: str) -> str:
    return f"{column} IS NOT NULL AND substring({column} from 1 for {len(b'RBC2') + 8}) <> {prefix_param}"


async def left_in(conn: Executor, table: str, current_prefix: bytes) -> int:
    """How many values in `table` are not yet under the key whose ciphertext starts with `current_prefix`."""
    table, column = TABLES[table]
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {table} WHERE {_not_under(column, '$1')}",  # noqa: S608 - fixed names
            current_prefix,
        )
    )


async def next_batch(
    conn: Executor, table: str, current_prefix: bytes, after: uuid.UUID | None, limit: int
) -> list[StoredValue]:
    """The next `limit` values not under the current key, in id order after `after`."""
    table, column = TABLES[table]
    rows = await conn.fetch(
        f"""SELECT id, {column} AS ciphertext FROM {table}
            WHERE ($2::uuid IS NULL OR id > $2) AND {_not_under(column, "$1")}
            ORDER BY id LIMIT $3""",  # noqa: S608 - fixed names
        current_prefix,
        after,
        limit,
    )
    return [StoredValue(r["id"], r["ciphertext"]) for r in rows]


@dataclass(frozen=True)
class Rewrite:
    id: uuid.UUID
    old: bytes
    new: bytes
    #: the referral's recomputed e-mail and phone blind indexes (referrals only)
    email_bidx: bytes | None = None
    phone_bidx: bytes | None = None


async def rewrite(conn: Connection, table: str, rewrites: list[Rewrite]) -> int:
    """Replace each old ciphertext by its new one (and a referral's indexes) where it is still the old one.

    Returns how many were replaced; the others changed since they were read and are not touched."""
    place = table
    table, column = TABLES[place]
    done = 0
    for r in rewrites:
        if place == "referrals":
            status = await conn.execute(
                """UPDATE referrals SET contact_ct = $3, email_bidx = $4, phone_bidx = $5
                   WHERE id = $1 AND contact_ct = $2""",
                r.id, r.old, r.new, r.email_bidx, r.phone_bidx,
            )  # fmt: skip
        else:
            status = await conn.execute(
                f"UPDATE {table} SET {column} = $3 WHERE id = $1 AND {column} = $2",  # noqa: S608 - fixed names
                r.id,
                r.old,
                r.new,
            )
        done += int(status.split()[-1])
    return done
