"""The consent a patient gives: which version is current, and what identifies each version's texts.

The wording is the catalogues' text `consent.<version>` in each of the version's languages; here is only
what is recorded with a referral, pinned so that no catalogue edit can change what a recorded version
means (docs/decisions/0031-consent-text-in-the-catalogue.md).
"""

from __future__ import annotations

from typing import Final

CONSENT_VERSION: Final = "2026-11-01"

#: The languages each version was written in. A new language is a new text, and so a new version.
CONSENT_LANGUAGES: Final[dict[str, tuple[str, ...]]] = {"2026-11-01": ("nb", "en")}

#: SHA-256 of the msgspec JSON of each version's sorted (language, text) pairs.
CONSENT_TEXT_SHA256: Final[dict[str, str]] = {
    "2026-11-01": "81647baa0f9b2d7db5585fbc6ad0905406bb39aede2c55cfe36c87b57cd12271",
}


def consent_text_sha256(version: str = CONSENT_VERSION) -> str:
    """Hash of the consent texts of `version`, recorded with each referral as proof of what was shown."""
    return CONSENT_TEXT_SHA256[version]
