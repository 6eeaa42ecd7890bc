"""The clinic's program installs on its own, with only what a clinic needs (issue 18 §1).

The protocol and clinic wheels are built from this repository as a release would build them, installed into
a fresh virtual environment with their dependencies from the package index, and the installed set is
checked: the program starts, every one of its modules imports, and none of the broker's servers, stores or
its own code came along.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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


def _copy(name: str, tmp_path: Path) -> Path:
    """A clean copy of one distribution's folder, so the build leaves nothing in the working tree."""
    target = tmp_path / "src" / name
    shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return target


def _run(argv: list[str | Path], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # The suite's own interpreter settings (coverage hooks, a virtual environment) stay out of the fresh one.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "COV_CORE"))}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env, cwd=cwd, check=False)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def clinic_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("clinic-distribution")
    wheels = tmp_path / "wheels"
    for name in ("protocol", "clinic"):
        _run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", wheels, _copy(name, tmp_path)]
        )
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv])
    (clinic_wheel,) = wheels.glob("referral_clinic-*.whl")
    # Only the clinic's wheel is named: the protocol is found beside it, everything else on the index.
    _run([_python(venv), "-m", "pip", "install", "--quiet", "--find-links", wheels, clinic_wheel])
    return venv


def test_the_clinic_wheel_installs_the_program_and_nothing_of_the_broker(clinic_venv: Path) -> None:
    program = clinic_venv / ("Scripts/referral-clinic.exe" if os.name == "nt" else "bin/referral-clinic")
    help_text = _run([program, "--help"]).stdout
    assert "usage: referral-clinic" in help_text and "pull" in help_text and "desk" in help_text

    listed = json.loads(_run([_python(clinic_venv), "-m", "pip", "list", "--format=json"]).stdout)
    installed = {re.sub(r"[-_.]+", "-", p["name"]).lower() for p in listed}
    assert {"referral-clinic", "referral-protocol", "msgspec", "pynacl", "httpx", "waitress", "fpdf2"} <= installed
    assert not installed & BROKER_ONLY, sorted(installed & BROKER_ONLY)


def test_every_module_of_the_clinic_program_imports_with_only_its_own_dependencies(clinic_venv: Path) -> None:
    # An import of something only the broker's distribution brings would fail here.
    assert _run([_python(clinic_venv), "-c", IMPORT_EVERY_MODULE], cwd=clinic_venv).stdout.strip() == "imported"


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
