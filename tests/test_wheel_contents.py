"""The broker's wheel holds the broker and nothing of its development machinery: no private-server
launcher, no dev stack, no tests or bench, and not the clinic's program; and it still holds the migrations,
templates, static files and text catalogues the programs read at run time."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "referral_broker"
# What never goes into the build's copy of the tree: local state, caches, secrets.
NOT_COPIED = {".git", ".venv", ".dev", "keys", "build", "dist", "htmlcov", "test-artifacts"}


def _build_wheel(tmp_path: Path) -> Path:
    """Build as the container image does (`pip install .`), from a copy of the whole tree, so that a
    package finder reaching beyond src/ would show here too."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in NOT_COPIED or entry.name.endswith("_cache"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, tree / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(entry, tree / entry.name)
    out = tmp_path / "wheel"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("referral_broker-*.whl")
    return wheel


def test_the_wheel_holds_the_product_and_none_of_its_development_machinery(tmp_path: Path) -> None:
    with zipfile.ZipFile(_build_wheel(tmp_path)) as archive:
        names = archive.namelist()
        entry_points = archive.read("referral_broker-0.1.0.dist-info/entry_points.txt").decode()
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"referral_broker", "referral_broker-0.1.0.dist-info"}, top_level
    for forbidden in ("localservers", "devstack", "referral_broker/cli/dev.py", "tests/", "bench/", "conftest"):
        assert not [n for n in names if forbidden in n], forbidden

    # Everything the programs read at run time, file for file as in the source tree.
    for pattern in (
        "store/migrations/*.sql",
        "web/templates/**/*.html",
        "web/static/*",
        "py.typed",
        "texts/translations/*/LC_MESSAGES/messages.po",  # compiled in memory at first use: no .mo files
    ):
        expected = {f"referral_broker/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.glob(pattern)}
        assert expected, pattern
        assert expected <= set(names), sorted(expected - set(names))
    sources = {f"referral_broker/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    assert sources == {n for n in names if n.endswith(".py")}
    # The broker's program only: the clinic's program and the protocol are distributions of their own.
    scripts = [line.split(" = ")[0] for line in entry_points.splitlines() if " = " in line]
    assert scripts == ["referral-broker"], entry_points
    assert not [n for n in names if n.startswith("referral_broker/clinic/") or "referral_clinic" in n]
    assert not [n for n in names if "referral_protocol" in n]
