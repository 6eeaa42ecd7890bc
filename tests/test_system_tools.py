"""`scripts/ensure-system-tools` installs what `make dev` and `make unit` need (PostgreSQL, Redis, ...) from
Debian's packages when it is missing, and only then; as no root, it says what to install."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ensure-system-tools"
ABSENT = "no-such-program-rb-7f3a"


def _fake_bin(folder: Path, *, uid: int) -> Path:
    """`id` answering `uid`, and an `apt-get` that records its arguments instead of installing."""
    folder.mkdir()
    (folder / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (folder / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {folder / "apt-calls"}\n')
    for name in ("id", "apt-get"):
        (folder / name).chmod(0o755)
    return folder


def _run(fake: Path, *pairs: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(fake)}
    return subprocess.run(["bash", str(SCRIPT), *pairs], env=env, capture_output=True, text=True, timeout=60)


def _apt_calls(fake: Path) -> list[str]:
    calls = fake / "apt-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_nothing_is_installed_when_every_program_is_there(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path / "bin", uid=0)
    result = _run(fake, "sh=dash", "initdb=postgresql", "redis-server=redis-server")
    assert result.returncode == 0, result.stderr
    assert _apt_calls(fake) == []


def test_as_root_the_missing_packages_are_installed_without_questions(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path / "bin", uid=0)
    result = _run(fake, "sh=dash", f"{ABSENT}=some-package", f"{ABSENT}-too=other-package")
    lock_wait = "-o DPkg::Lock::Timeout=300"
    assert _apt_calls(fake) == [
        f"noninteractive {lock_wait} update -qq",
        f"noninteractive {lock_wait} install -y -qq --no-install-recommends some-package other-package",
    ]
    # The fake apt-get installed nothing: the script says so instead of pretending.
    assert result.returncode == 1 and f"{ABSENT} is still missing" in result.stderr


def test_without_root_it_names_the_packages_to_install_and_fails(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path / "bin", uid=1000)
    result = _run(fake, f"{ABSENT}=some-package", "sh=dash")
    assert result.returncode == 1
    assert "apt-get install -y some-package" in result.stderr
    assert _apt_calls(fake) == []


def test_the_makefile_installs_postgresql_and_redis_before_dev_and_the_tests() -> None:
    makefile = (SCRIPT.parent.parent / "Makefile").read_text()
    servers = "initdb=postgresql pg_ctl=postgresql pg_dump=postgresql-client redis-server=redis-server"
    assert f"SERVER_TOOLS := {servers}" in makefile
    for target, needs in (("dev", "server-tools"), ("unit", "system-tools"), ("bench", "$(SERVER_TOOLS)")):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert needs in recipe, target
    for target in ("server-tools", "system-tools"):
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert "scripts/ensure-system-tools $(SERVER_TOOLS)" in recipe, target
    assert os.access(SCRIPT, os.X_OK)
