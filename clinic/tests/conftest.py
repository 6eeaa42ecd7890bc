"""The clinic program's tests: they need only the protocol, the clinic's program and pytest installed.

This folder is on the import path (pythonpath in clinic/pyproject.toml and in the repository's), so its
helpers are imported by name: `clinic_folder`, `broker_stand_in`, `desk_stand`.
"""

import os

from clinic_folder import clinic, clinic_env  # noqa: F401 - the fixtures every test here uses

# Key files made here use the quick key-derivation profile (the broker suite's conftest does the same).
os.environ.setdefault("REFERRAL_CLINIC_KDF_PROFILE", "interactive")
