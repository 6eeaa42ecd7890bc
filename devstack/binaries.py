"""Where the system's PostgreSQL and Redis programs are.

Installing them is not done here: `scripts/ensure-system-tools` does that, called by `make dev` and
`make unit` (it needs root and apt-get, which a test run or a launcher should not reach for).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack.ports import ServerUnavailable

POSTGRES_PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_dump", "psql")
DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_REDIS_FALLBACK_DIRS = (Path("/usr/bin"), Path("/usr/local/bin"), Path("/usr/sbin"))
INSTALL_HINT = (
    "Install the server binaries: `make dev` or `make unit` do it on Debian/Ubuntu "
    "(scripts/ensure-system-tools, as root), or by hand: `apt-get install -y postgresql redis-server`."
)


def _version_key(directory: Path) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in directory.name.split("."))
    except ValueError:
        return None


def _debian_pg_bindirs() -> list[Path]:
    """/usr/lib/postgresql/*/bin, highest version first."""
    versioned: list[tuple[tuple[int, ...], Path]] = []
    if DEBIAN_PG_ROOT.is_dir():
        for child in DEBIAN_PG_ROOT.iterdir():
            key = _version_key(child)
            if key is not None and (child / "bin").is_dir():
                versioned.append((key, child / "bin"))
    return [bindir for _, bindir in sorted(versioned, reverse=True)]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_postgres_bin(name: str) -> Path:
    """Locate a PostgreSQL program (initdb, pg_ctl, postgres, pg_dump, psql, ...).

    Searches PATH first, then /usr/lib/postgresql/*/bin (Debian keeps the
    server programs there, off PATH), highest version first.
    """
    if not name or "/" in name or name in {".", ".."}:
        raise ServerUnavailable(f"not a program name: {name!r}")
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    bindirs = _debian_pg_bindirs()
    for bindir in bindirs:
        candidate = bindir / name
        if _is_executable(candidate):
            return candidate
    looked = ", ".join(str(d) for d in bindirs) or f"{DEBIAN_PG_ROOT}/*/bin (none present)"
    raise ServerUnavailable(f"PostgreSQL program {name!r} not found on PATH or in {looked}. {INSTALL_HINT}")


def find_redis_server() -> Path:
    """Locate redis-server: PATH first, then the usual system directories."""
    found = shutil.which("redis-server")
    if found is not None:
        return Path(found)
    for directory in _REDIS_FALLBACK_DIRS:
        candidate = directory / "redis-server"
        if _is_executable(candidate):
            return candidate
    raise ServerUnavailable(f"redis-server not found on PATH or in /usr/bin, /usr/local/bin. {INSTALL_HINT}")
