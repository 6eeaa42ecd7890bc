"""The clinic program needs nothing that only some systems have: it starts and files without `fcntl` (not on
Windows), `os.O_TMPFILE` (Linux only) or the fork start method (not on Windows; unsafe on macOS)."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

import portable_simulation
from clinic_folder import Clinic

simulated = pytest.mark.skipif(
    not portable_simulation.wanted(), reason=f"only with {portable_simulation.ENV}=1 (make test runs it so)"
)


@simulated
def test_the_simulated_system_really_lacks_fcntl_tmpfile_and_fork() -> None:
    with pytest.raises(ImportError):
        importlib.import_module("fcntl")
    assert not hasattr(os, "O_TMPFILE")
    assert "fork" not in multiprocessing.get_all_start_methods()
    with pytest.raises(ValueError):
        multiprocessing.get_context("fork")
    assert sys.modules.get("fcntl") is None
    # filelock keeps an OS lock, as it has one on Windows (LockFileEx) and macOS (flock); not the soft fallback.
    assert sys.modules["filelock"].FileLock.__name__ == "UnixFileLock"


@simulated
def test_a_pull_files_and_acknowledges_on_the_simulated_system(clinic: Clinic) -> None:
    payloads = [clinic.serve() for _ in range(3)]
    assert clinic.pull("--limit", "2") == 0
    assert sorted(clinic.broker.acknowledged) == sorted(p.delivery_id for p in payloads)
    assert sorted(p.name for p in clinic.out.glob("*.json")) == sorted(f"{p.reference}.json" for p in payloads)


PROBE = """
import json, os, sys
sys.modules["fcntl"] = None  # as on Windows: `import fcntl` fails
del os.O_TMPFILE
import referral_clinic.cli
from referral_clinic import folder_lock
from pathlib import Path
with folder_lock.hold(Path(sys.argv[1])):
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("referral_clinic"))))
"""


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="the probe removes O_TMPFILE, which only Linux has")
def test_the_clinic_program_starts_and_locks_its_folder_without_fcntl_or_o_tmpfile(tmp_path: object) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "referral_clinic.cli" in json.loads(done.stdout)
