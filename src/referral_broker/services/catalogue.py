"""What a patient may choose from: active clinics and the consent text."""

from __future__ import annotations

import msgspec

from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics
from referral_protocol import wording
from referral_protocol.consent import CONSENT_VERSION


class ClinicChoice(msgspec.Struct, frozen=True):
    slug: str
    name: str
    city: str | None
    categories: list[str]
    description: str | None


class ConsentText(msgspec.Struct, frozen=True):
    version: str
    text: dict[str, str]


def current_consent() -> ConsentText:
    return ConsentText(version=CONSENT_VERSION, text=dict(wording.consent_texts(CONSENT_VERSION)))


async def choosable_clinics(ctx: BrokerContext) -> list[ClinicChoice]:
    return [
        ClinicChoice(slug=c.slug, name=c.name, city=c.city, categories=c.categories, description=c.description)
        for c in await clinics.active_clinics(ctx.pool)
    ]
