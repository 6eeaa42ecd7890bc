"""The clinic's inbox: what a clinic may list, pull and acknowledge — its own deliveries, nothing else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from referral_broker.services import signing_rotation
from referral_broker.services.context import BrokerContext
from referral_broker.store import audit, broker_key_changes, clinics, deliveries, notices
from referral_broker.store.clinics import ClinicRow
from referral_protocol.enrolment import (
    INBOX_START,
    MAX_ACK,
    AckRequest,
    AckResult,
    InboxCursor,
    InboxItem,
    InboxPage,
)
from referral_protocol.errors import FieldError, InvalidRequest

MAX_PAGE = 500


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)  # the cursor keeps PostgreSQL's whole precision, as an integer


@dataclass(frozen=True)
class _Place:
    """A place in the order the inbox is served in: after referral (at, id), or after notice (at, id);
    a notice place without `at` is the start of the notices."""

    kind: str  # "r" or "n"
    at: datetime | None = None
    id: uuid.UUID | None = None

    @property
    def after(self) -> tuple[datetime, uuid.UUID] | None:
        return None if self.at is None or self.id is None else (self.at, self.id)

    def cursor(self) -> str:
        if self.at is None or self.id is None:
            return self.kind
        return f"{self.kind}.{(self.at - _EPOCH) // _MICROSECOND}.{self.id.hex}"

    @classmethod
    def of(cls, cursor: str) -> _Place | None:
        """The place a cursor names (None: the start); the API has checked its form (`InboxCursor`)."""
        if cursor == INBOX_START:
            return None
        kind, _, rest = cursor.partition(".")
        if not rest:
            return cls(kind)
        micros, _, hexid = rest.partition(".")
        return cls(kind, _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=hexid))


async def list_inbox(ctx: BrokerContext, clinic: ClinicRow, limit: int, after: str | None = None) -> InboxPage:
    """The clinic's inbox page (see `list_inbox_and_news`)."""
    page, _ = await list_inbox_and_news(ctx, clinic, limit, after)
    return page


async def list_inbox_and_news(
    ctx: BrokerContext, clinic: ClinicRow, limit: int, after: str | None = None
) -> tuple[InboxPage, bool]:
    """Referrals first, oldest first, each followed by the notices about it (decision 0140); then notices
    about referrals the clinic has received. A referral and its notices are never split across pages (a
    page holds more than `limit` items only when one referral's notices alone fill it), and a notice is
    never served before its referral.

    Each page says where the next begins (`next`); with `after` (`INBOX_START`, or a page's `next`) it
    begins where the one before ended, so the clinic reads on while it still files and acknowledges. What it left
    waiting (skipped, or not yet acknowledged) is not served again in that reading; the next reading
    from `INBOX_START` begins with it.

    One transaction: the listed deliveries are locked and marked served (decision 0139), so a withdrawal,
    erasure or correction deciding at the same moment which clinics to tell sees each copy either served
    or not, and a copy it cancels is not listed.

    With the page, whether it holds news: anything but key-change statements the clinic has acknowledged.
    Those are served in every reading, for the clinic's other machines, but must not wake a long poll again and
    again while a rotation lasts (days)."""
    limit = max(1, min(limit, MAX_PAGE))
    if after is not None:
        try:
            msgspec.convert(after, InboxCursor)
        except msgspec.ValidationError:
            raise InvalidRequest(
                [FieldError("after", "invalid", "not a place in the inbox: use start, or a page's next")]
            ) from None
    place = None if after is None else _Place.of(after)
    items: list[InboxItem] = []
    more = False
    async with ctx.pool.acquire() as conn, conn.transaction():
        # The signing key's change statements come first in every reading, outside `limit` (decision 0071).
        found = await signing_rotation.statements_for(ctx, conn, clinic) if place is None else []
        statements = [InboxItem(delivery_id=str(sid), envelope=envelope) for sid, envelope, _ in found]
        news = any(not acknowledged for _, _, acknowledged in found)
        if place is None or place.kind == "r":
            rows = await deliveries.inbox(conn, clinic.id, limit, None if place is None else place.after)
            more = len(rows) > limit
            about = await notices.attached(conn, clinic.id, [r.id for r in rows[:limit]])
            shown: list[deliveries.InboxRow] = []
            for row in rows[:limit]:
                group = [InboxItem(delivery_id=str(row.id), envelope=row.envelope)]
                group += [InboxItem(delivery_id=str(n.id), envelope=n.envelope) for n in about.get(row.id, [])]
                if items and len(items) + len(group) > limit:
                    more = True  # this referral and its notices begin the next page
                    break
                items += group
                shown.append(row)
            await deliveries.mark_served(conn, [r.id for r in shown if r.served_at is None], ctx.clock())
            if shown:
                place = _Place("r", shown[-1].dispatched_at, shown[-1].id)
        if not more:
            room = max(0, limit - len(items))
            after_notice = place.after if place and place.kind == "n" else None
            waiting = await notices.inbox(conn, clinic.id, room, after_notice)
            shown_notices = waiting[:room]
            items += [InboxItem(delivery_id=str(n.id), envelope=n.envelope) for n in shown_notices]
            more = len(waiting) > room
            if shown_notices:
                place = _Place("n", shown_notices[-1].created_at, shown_notices[-1].id)
            elif place is None or place.kind == "r":
                place = _Place("n")  # the referrals ended with this page: the next one begins with the notices
    await clinics.record_pull(ctx.pool, clinic.id, ctx.clock())
    news = news or bool(items) or more
    items = statements + items
    return InboxPage(items=items, more=more, next=place.cursor() if more and place is not None else None), news


async def acknowledge(ctx: BrokerContext, clinic: ClinicRow, request: AckRequest) -> AckResult:
    """Idempotent: acknowledging twice reports the id as acknowledged both times and changes nothing."""
    if len(request.delivery_ids) > MAX_ACK:
        raise InvalidRequest([FieldError("delivery_ids", "too_many", f"acknowledge at most {MAX_ACK} at once")])
    ids: list[uuid.UUID] = []
    unknown: list[str] = []
    for raw in request.delivery_ids:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            unknown.append(raw)
    now = ctx.clock()
    async with ctx.pool.acquire() as conn, conn.transaction():
        moved, before = await deliveries.acknowledge(conn, clinic.id, ids, now)
        if moved:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="delivery.acknowledged",
                subject=clinic.slug,
                details={"deliveries": [str(i) for i in moved]},
            )
        settled = {*moved, *before}
        rest = [i for i in ids if i not in settled]
        notices_moved, notices_before = await notices.acknowledge(conn, clinic.id, rest, now) if rest else ([], [])
        settled |= {*notices_moved, *notices_before}
        rest = [i for i in ids if i not in settled]
        pinned, pinned_before = await broker_key_changes.acknowledge(conn, clinic.id, rest, now) if rest else ([], [])
        if pinned:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="broker_key.statement_acknowledged",
                subject=clinic.slug,
                details={"statements": [str(i) for i in pinned]},
            )
        if notices_moved:
            await audit.append(
                conn,
                at=now,
                actor=f"clinic:{clinic.slug}",
                action="notice.acknowledged",
                subject=clinic.slug,
                details={"notices": [str(i) for i in notices_moved]},
            )
    known = {str(i) for i in (*moved, *before, *notices_moved, *notices_before, *pinned, *pinned_before)}
    return AckResult(
        acknowledged=[r for r in request.delivery_ids if r in known],
        unknown=[r for r in request.delivery_ids if r not in known],
    )
