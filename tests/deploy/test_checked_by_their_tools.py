"""The deployment files checked by the programs that will read them, not only by reading them here:
`systemd-analyze verify` for every unit, and the Kubernetes manifests against the API schemas of a current
Kubernetes release (kubernetes-validate ships them, so this runs offline).

`make test` installs Debian's systemd (for systemd-analyze) and kubectl through scripts/ensure-system-tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_deploy_artefacts import OVERLAYS, kustomize

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BROKER_UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
CLINIC_UNIT = DEPLOY / "clinic" / "referral-clinic-watch.service"
# The Kubernetes release the manifests are checked against: the newest whose schemas kubernetes-validate ships.
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is needed (make test installs Debian's systemd package)"
    return found


def _executable(path: Path, target: str) -> None:
    """A stand-in for an installed program at the path a unit names: it runs this checkout's own program, so
    verify's check that ExecStart is executable is met by what the install steps put there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
    path.chmod(0o755)


@pytest.fixture(scope="module")
def system_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root as docs/operations.md installs the broker: the venv's program under /opt/referral-broker, the units
    in /etc/systemd/system, the environment file, and the distribution's own units for the targets they name."""
    root = tmp_path_factory.mktemp("root")
    program = str(Path(sys.executable).with_name("referral-broker"))
    _executable(root / "opt/referral-broker/bin/referral-broker", program)
    (root / "etc/referral-broker").mkdir(parents=True)
    (root / "etc/referral-broker/environment").write_text(
        "DATABASE_URL=postgresql://broker@localhost/referral_broker\n"
    )
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in BROKER_UNITS:
        shutil.copy(unit, units / unit.name)
    for system_units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if system_units.is_dir():
            shutil.copytree(system_units, root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
            break
    return root


def test_systemd_verifies_the_broker_units(system_root: Path) -> None:
    units = [str(system_root / "etc/systemd/system" / u.name) for u in BROKER_UNITS]
    result = subprocess.run(
        [_systemd_analyze(), "verify", f"--root={system_root}", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr  # verify reports warnings on stderr and still exits 0


def test_systemd_verify_would_notice_a_unit_whose_program_is_missing(tmp_path: Path) -> None:
    """The check above can fail: the same units in a root without the installed program are refused."""
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    unit = tmp_path / "etc/systemd/system" / BROKER_UNITS[0].name
    shutil.copy(BROKER_UNITS[0], unit)
    result = subprocess.run(
        [_systemd_analyze(), "verify", f"--root={tmp_path}", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "/opt/referral-broker/bin/referral-broker" in result.stderr


def _user_manager_env(home: Path, tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}


def test_systemd_verifies_the_clinic_user_unit(tmp_path: Path) -> None:
    """The clinic's unit is a user unit: %h is the clinic user's home, where `pipx`/`uv tool` put the program."""
    home = tmp_path / "home"
    _executable(home / ".local/bin/referral-clinic", str(Path(sys.executable).with_name("referral-clinic")))
    (home / ".config/referral-clinic").mkdir(parents=True)
    (home / ".config/referral-clinic/passphrase.env").write_text("REFERRAL_CLINIC_PASSPHRASE=example\n")
    result = subprocess.run(
        [_systemd_analyze(), "--user", "verify", str(CLINIC_UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_user_manager_env(home, tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", BROKER_UNITS, ids=lambda p: p.name)
def test_broker_units_stay_well_sandboxed_by_systemds_own_measure(system_root: Path, unit: Path) -> None:
    """`systemd-analyze security` scores exposure from 0 (locked down) to 10; docs/operations.md records each
    unit's score. A unit that loses its sandboxing climbs above 3 and fails here."""
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", f"--root={system_root}", "--threshold=20", unit.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level" in result.stdout


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_api_schemas(folder: Path) -> None:
    documents = kustomize(folder)
    assert documents
    for document in documents:
        # strict: a misspelt or misplaced field is an error, not silently ignored as the API server would
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_check_would_notice_a_misplaced_field() -> None:
    deployment = next(d for d in kustomize(OVERLAYS[0]) if d["kind"] == "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFilesystem"] = True  # belongs in securityContext
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
