"""What a patient may choose from: active clinics and the consent text."""

from __future__ import annotations

import msgspec

from referral_broker import texts
from referral_broker.domain.consent import CONSENT_VERSION
from referral_broker.services.context import BrokerContext
from referral_broker.store import clinics


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
    return ConsentText(version=CONSENT_VERSION, text=dict(texts.consent_texts(CONSENT_VERSION)))


async def choosable_clinics(ctx: BrokerContext) -> list[ClinicChoice]:
    return [
        ClinicChoice(slug=c.slug, name=c.name, city=c.city, categories=c.categories, description=c.description)
        for c in await clinics.active_clinics(ctx.pool)
    ]
