"""What clinics treat: one fixed vocabulary, so a category never carries free text about a person.

The names people read are texts of the catalogues (`category.<slug>`)."""

from __future__ import annotations

from typing import Final

CATEGORIES: Final[tuple[str, ...]] = (
    "general",
    "physiotherapy",
    "psychology",
    "dermatology",
    "orthopaedics",
    "gynaecology",
    "ophthalmology",
    "dental",
)
