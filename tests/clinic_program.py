"""Where the clinic program lives, named once for the tests of its guide, README list and start-at-login files.

The program is its own distribution (referral-clinic); should it move again, this is the one file to change.
"""

from __future__ import annotations

from referral_clinic import fhir, notice_file, referral_file
from referral_clinic.cli import _parser as build_parser

__all__ = ["build_parser", "fhir", "notice_file", "referral_file"]
