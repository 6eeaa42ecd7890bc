"""Where the clinic program lives, named once for the tests of its guide, README list and start-at-login files.

When the program moves (its own distribution, issue 18 §1), this is the one file those tests need changed.
"""

from __future__ import annotations

from referral_broker.clinic import fhir, notice_file, referral_file
from referral_broker.clinic.cli import _parser as build_parser

__all__ = ["build_parser", "fhir", "notice_file", "referral_file"]
