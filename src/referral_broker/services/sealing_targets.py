"""What intake knows of the clinics it seals to: read from PostgreSQL, kept a few seconds in this process.

Each submission used to read its chosen clinics and their active encryption keys first: one more query
and round trip a referral (its cost: docs/performance.md). Now a process keeps what it read for
`FRESH_SECONDS`, and the insert itself checks, in the same statement, that each clinic is still active
with exactly the keys sealed to (`store.referrals.ClinicsChanged` otherwise, and intake reads again and
seals anew). So a revoked or rotated key, or a suspended clinic,
is never sealed to from what a process remembers; what is cached only spares the read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from referral_broker.domain.keys import ClinicStatus
from referral_broker.store import clinics
from referral_broker.store.clinics import SealingTarget
from referral_broker.store.pool import Executor

#: How long a read is used without reading again; the insert's own check keeps it correct in between.
FRESH_SECONDS = 5.0


class SealingTargets:
    def __init__(self, *, fresh_seconds: float = FRESH_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._fresh_seconds = fresh_seconds
        self._clock = clock
        self._known: dict[str, tuple[float, SealingTarget]] = {}  # slug -> (when read, what was read)

    async def read(self, conn: Executor, slugs: list[str], *, again: bool = False) -> dict[str, SealingTarget]:
        """The clinics of `slugs` that exist, by slug. From memory when each was read lately and could
        receive then; otherwise (or with `again`) from the database."""
        now = self._clock()
        if not again:
            known = {s: entry[1] for s in slugs if (entry := self._known.get(s)) and self._usable(entry, now)}
            if len(known) == len(set(slugs)):
                return known
        found = await clinics.sealing_targets(conn, slugs)
        for target in found:
            self._known[target.slug] = (now, target)
        return {t.slug: t for t in found}

    def _usable(self, entry: tuple[float, SealingTarget], now: float) -> bool:
        read_at, target = entry
        fresh = now - read_at < self._fresh_seconds
        return fresh and target.status == ClinicStatus.ACTIVE and bool(target.encryption_keys)
