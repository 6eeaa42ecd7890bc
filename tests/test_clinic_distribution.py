"""The clinic's program installs on its own, with only what a clinic needs (issue 18 §1).

The protocol and clinic wheels are built from this repository as a release would build them, installed into
a fresh virtual environment with their dependencies from the package index, and the installed set is
checked: the program starts, every one of its modules imports, and none of the broker's servers, stores or
its own code came along.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from tests.clinic_wheels import ROOT, install_clinic_from_wheels, run_clean, venv_program, venv_python

# What only the broker needs: none of it may reach a clinic's computer.
BROKER_ONLY = {
    "litestar", "uvicorn", "asyncpg", "arq", "redis", "hiredis", "aiosmtplib", "uvloop", "httptools",
    "prometheus-client", "argon2-cffi", "pyotp", "referral-broker",
}  # fmt: skip
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, referral_clinic, referral_protocol
for package in (referral_clinic, referral_protocol):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
print("imported")
"""


@pytest.fixture(scope="module")
def clinic_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_clinic_from_wheels(tmp_path_factory.mktemp("clinic-distribution"))


def test_the_clinic_wheel_installs_the_program_and_nothing_of_the_broker(clinic_venv: Path) -> None:
    program = venv_program(clinic_venv, "referral-clinic")
    help_text = run_clean([program, "--help"]).stdout
    assert "usage: referral-clinic" in help_text and "pull" in help_text and "desk" in help_text

    listed = json.loads(run_clean([venv_python(clinic_venv), "-m", "pip", "list", "--format=json"]).stdout)
    installed = {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in listed}
    assert {"referral-clinic", "referral-protocol", "msgspec", "pynacl", "httpx", "waitress", "fpdf2"} <= installed
    assert not installed & BROKER_ONLY, sorted(installed & BROKER_ONLY)


def test_every_module_of_the_clinic_program_imports_with_only_its_own_dependencies(clinic_venv: Path) -> None:
    # An import of something only the broker's distribution brings would fail here.
    assert (
        run_clean([venv_python(clinic_venv), "-c", IMPORT_EVERY_MODULE], cwd=clinic_venv).stdout.strip() == "imported"
    )


def test_the_installed_files_hold_nothing_of_the_broker(clinic_venv: Path) -> None:
    site_packages = next(clinic_venv.glob("lib/python3*/site-packages"), clinic_venv / "Lib" / "site-packages")
    assert not [p for p in site_packages.rglob("*referral_broker*")]
    ours = [p for name in ("referral_clinic", "referral_protocol") for p in (site_packages / name).rglob("*.py")]
    assert len(ours) > 20
    mentions = [p for p in ours if re.search(r"^\s*(from|import) referral_broker\b", p.read_text(), re.MULTILINE)]
    assert not mentions, mentions


def test_the_clinic_wheel_carries_the_desks_files_and_the_protocol_is_not_copied_into_it(clinic_venv: Path) -> None:
    (clinic_wheel,) = (clinic_venv.parent / "wheels").glob("referral_clinic-*.whl")
    with zipfile.ZipFile(clinic_wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("referral_clinic-0.1.0.dist-info/METADATA").decode()
    desk = ROOT / "clinic" / "src" / "referral_clinic" / "desk"
    for pattern in ("templates/*.html", "static/*", "fonts/*", "locale/*/LC_MESSAGES/*.po"):
        expected = {f"referral_clinic/desk/{p.relative_to(desk).as_posix()}" for p in desk.glob(pattern)}
        assert expected and expected <= names, pattern
    assert not [n for n in names if n.startswith("referral_protocol/")]
    assert "Requires-Dist: referral-protocol" in metadata
    assert re.search(r"^Requires-Python: >=3\.11$", metadata, re.MULTILINE), "no upper cap on Python"
