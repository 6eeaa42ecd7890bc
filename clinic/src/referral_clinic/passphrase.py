"""Where the passphrase that locks the clinic's key file comes from, and how hard it is stretched."""

from __future__ import annotations

import getpass
import os
import sys

from referral_protocol.keyfile import MIN_PASSPHRASE, PROFILES

PASSPHRASE_ENV = "REFERRAL_CLINIC_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
NEW_PASSPHRASE_ENV = "REFERRAL_CLINIC_NEW_PASSPHRASE"  # noqa: S105 - for `referral-clinic passphrase`
KDF_PROFILE_ENV = "REFERRAL_CLINIC_KDF_PROFILE"
DEFAULT_KDF_PROFILE = "moderate"


class PassphraseUnavailable(Exception):
    """No passphrase could be had, or the one given is not acceptable; the message says why."""


def read_passphrase(*, confirm: bool = False) -> str:
    """The passphrase from the environment, else asked for on the terminal (twice when `confirm`)."""
    given = os.environ.get(PASSPHRASE_ENV)
    if given is not None:
        passphrase = given
    elif sys.stdin.isatty():
        passphrase = _prompt(confirm)
    else:
        raise PassphraseUnavailable(f"no passphrase: set {PASSPHRASE_ENV} or run this from a terminal")
    if confirm and len(passphrase) < MIN_PASSPHRASE:
        # checked before the slow key derivation, so a short one is refused at once
        raise PassphraseUnavailable(f"the passphrase must be at least {MIN_PASSPHRASE} characters long")
    return passphrase


def read_new_passphrase() -> str:
    """The new passphrase for `referral-clinic passphrase`: from the environment, else asked twice."""
    given = os.environ.get(NEW_PASSPHRASE_ENV)
    if given is not None:
        passphrase = given
    elif sys.stdin.isatty():
        try:
            passphrase = getpass.getpass("New passphrase: ")
            if getpass.getpass("New passphrase again: ") != passphrase:
                raise PassphraseUnavailable("the two new passphrases differ; nothing was changed")
        except EOFError:
            raise PassphraseUnavailable("no new passphrase was entered") from None
    else:
        raise PassphraseUnavailable(f"no new passphrase: set {NEW_PASSPHRASE_ENV} or run this from a terminal")
    if len(passphrase) < MIN_PASSPHRASE:
        raise PassphraseUnavailable(f"the new passphrase must be at least {MIN_PASSPHRASE} characters long")
    return passphrase


def _prompt(confirm: bool) -> str:
    try:
        first = getpass.getpass("Passphrase for the clinic key: ")
        if confirm and getpass.getpass("Same passphrase again: ") != first:
            raise PassphraseUnavailable("the two passphrases differ; nothing was created")
    except EOFError:
        raise PassphraseUnavailable("no passphrase was entered") from None
    return first


def kdf_profile() -> str:
    """The Argon2id strength for a new key file; "moderate" unless the environment says otherwise."""
    profile = os.environ.get(KDF_PROFILE_ENV, DEFAULT_KDF_PROFILE)
    if profile not in PROFILES:
        choices = ", ".join(PROFILES)
        raise PassphraseUnavailable(f"{KDF_PROFILE_ENV}={profile!r} is not one of: {choices}")
    return profile
