"""The clinic's program as a clinic gets it: the protocol and clinic wheels built from this repository, as a
release would build them, and installed into a fresh virtual environment with their dependencies from the
package index (pip with --find-links, the same files `pipx install ./clinic --preinstall ./protocol` builds).

Shared by the distribution test and the end-to-end test that runs the installed program."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the suite's interpreter settings (coverage hooks, a virtual
    environment, PYTHONPATH pointing into the working tree), so the fresh one sees only what it installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "COV_CORE"))}
    return {**env, **extra}


def run_clean(
    argv: list[str | Path], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `argv` with a clean environment; its output is in the failure message when it fails."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=900, env=env or clean_env(), cwd=cwd, check=False
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_program(venv: Path, name: str) -> Path:
    return venv / (f"Scripts/{name}.exe" if os.name == "nt" else f"bin/{name}")


def _copy(name: str, tmp_path: Path) -> Path:
    """A clean copy of one distribution's folder, so the build leaves nothing in the working tree."""
    target = tmp_path / "src" / name
    shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    return target


def install_clinic_from_wheels(tmp_path: Path) -> Path:
    """Build both wheels into tmp_path/wheels and install the clinic's into the fresh venv tmp_path/venv."""
    wheels = tmp_path / "wheels"
    for name in ("protocol", "clinic"):
        run_clean(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", wheels, _copy(name, tmp_path)]
        )
    venv = tmp_path / "venv"
    run_clean([sys.executable, "-m", "venv", venv])
    (clinic_wheel,) = wheels.glob("referral_clinic-*.whl")
    # Only the clinic's wheel is named: the protocol is found beside it, everything else on the index.
    run_clean([venv_python(venv), "-m", "pip", "install", "--quiet", "--find-links", wheels, clinic_wheel])
    return venv
