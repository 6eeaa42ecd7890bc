"""Realistic referral requests: Norwegian names and needs of the lengths patients write, two clinics each."""

from __future__ import annotations

import json
import random

import phonenumbers

_FIRST = ["Kari", "Ola", "Ingrid", "Lars", "Sofie", "Jonas", "Nora", "Emil", "Aisha", "Mohammed", "Eva", "Håkon"]
_LAST = ["Nordmann", "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Berg", "Haugen"]
_NEEDS = [
    (
        "physiotherapy",
        "Jeg har hatt vondt i venstre kne siden jeg vred det på fotballtrening for tre uker siden. Det hovner "
        "opp etter gåturer over en halvtime, og jeg klarer ikke å gå ned trapper uten å holde meg fast. "
        "Fastlegen mener det kan være en menisk- eller leddbåndsskade og anbefalte fysioterapi. Jeg jobber "
        "skift og kan helst komme på formiddager.",
    ),
    (
        "dermatology",
        "En føflekk på ryggen har endret farge og blitt større det siste halvåret. Den klør av og til. "
        "Min mor hadde melanom, så jeg ønsker en undersøkelse så snart som mulig.",
    ),
    (
        "psychology",
        "Jeg har slitt med søvn og uro i flere måneder etter en vanskelig periode på jobb. Jeg våkner tidlig "
        "og får ikke sove igjen, og kjenner meg nedstemt store deler av dagen. Jeg har ikke gått til psykolog "
        "før og vet ikke helt hva jeg trenger, men ønsker en samtale for å finne ut av det. Jeg foretrekker "
        "time etter klokken 16, og kan gjerne ta samtaler på video.",
    ),
    ("physiotherapy", "Smerter i nakke og skuldre etter mye arbeid foran skjerm. Hodepine flere ganger i uka."),
]


def referral(i: int, clinics: list[str], rng: random.Random) -> dict[str, object]:
    category, need = _NEEDS[i % len(_NEEDS)]
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "clinics": clinics,
        "need": {"category": category, "description": need},
        "patient": {
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{i}@example.no",
            "phone": _mobile(rng),
            "birth_date": f"{rng.randrange(1940, 2005)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
        },
        "consent": {"version": "2026-11-01", "accepted": True},
    }


def _mobile(rng: random.Random) -> str:
    """A Norwegian mobile number that the broker's validation accepts."""
    while True:
        number = f"{rng.choice('49')}{rng.randrange(10_000_000):07d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number, "NO")):
            return number


def bodies(clinics: list[str], n: int = 200, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [json.dumps(referral(i, clinics, rng), ensure_ascii=False).encode() for i in range(n)]
