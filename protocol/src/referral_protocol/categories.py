"""What clinics treat: one fixed vocabulary, so a category never carries free text about a person."""

from __future__ import annotations

CATEGORIES: dict[str, dict[str, str]] = {
    "general": {"nb": "Allmennmedisin", "en": "General practice"},
    "physiotherapy": {"nb": "Fysioterapi", "en": "Physiotherapy"},
    "psychology": {"nb": "Psykologi", "en": "Psychology"},
    "dermatology": {"nb": "Hudsykdommer", "en": "Dermatology"},
    "orthopaedics": {"nb": "Ortopedi", "en": "Orthopaedics"},
    "gynaecology": {"nb": "Gynekologi", "en": "Gynaecology"},
    "ophthalmology": {"nb": "Øyesykdommer", "en": "Ophthalmology"},
    "dental": {"nb": "Tannhelse", "en": "Dental care"},
}
