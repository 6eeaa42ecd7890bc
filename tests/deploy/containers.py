"""Building and running the broker's image with podman in tests (tests/deploy/test_image.py, test_compose.py).

The image is built by deploy/build-image, the same script `make image` runs, from a Debian base made on this
machine and cached by its recipe: a warm run reuses the base and podman's layers. Every container a test starts
has a name of this run (`rbtest-…`) and is removed by that name at the end.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD_IMAGE = ROOT / "deploy" / "build-image"
STANDINS = Path(__file__).resolve().parent / "standins"
# The names deploy/compose.yaml uses: podman resolves `referral-broker:latest` to localhost/, the official images'
# short names to docker.io/library/ (where the stand-ins are tagged, since no registry can be reached here).
IMAGE = "localhost/referral-broker:latest"
POSTGRES_IMAGE = "docker.io/library/postgres:15-bookworm"
REDIS_IMAGE = "docker.io/library/redis:7-bookworm"
# podman's global options, as deploy/build-image uses them (runc; cgroupfs, as there is no systemd here).
PODMAN = ["podman", *os.environ.get("PODMAN_OPTS", "--runtime runc --cgroup-manager=cgroupfs").split()]
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
BROKER_UID = 10001


@functools.cache
def podman_unusable() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (make system-tools installs podman, runc and mmdebstrap)"
    if shutil.which("mmdebstrap") is None:
        return "mmdebstrap is not installed (make system-tools installs it): the image's base is made with it"
    info = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=120, check=False)
    if info.returncode != 0:
        return f"podman cannot run containers here: {info.stderr.strip()[-300:]}"
    return None


def skip_without_podman() -> pytest.MarkDecorator:
    reason = podman_unusable()
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def podman(*args: str, timeout: float = 300, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def build_image() -> tuple[str, float]:
    """deploy/build-image's image and how long building it took (seconds)."""
    started = time.monotonic()
    result = subprocess.run(
        [str(BUILD_IMAGE), "--tag", IMAGE], capture_output=True, text=True, timeout=3600, check=False
    )
    took = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(f"deploy/build-image failed after {took:.0f} s:\n{result.stderr[-4000:]}")
    print(f"\ndeploy/build-image took {took:.0f} s")
    return result.stdout.strip().splitlines()[-1], took


def base_image() -> str:
    result = subprocess.run([str(BUILD_IMAGE), "--base-only"], capture_output=True, text=True, timeout=3600, check=True)
    return result.stdout.strip().splitlines()[-1]


def build_standins() -> None:
    """TEST STAND-INS for postgres:15-bookworm and redis:7-bookworm (no registry here): Debian's packages on the
    same local base, tagged with the names deploy/compose.yaml uses."""
    base = base_image()
    for containerfile, tag in (("postgres.Containerfile", POSTGRES_IMAGE), ("redis.Containerfile", REDIS_IMAGE)):
        podman(
            "build", "--format", "docker", "--network", "host", *ULIMITS, "--layers",
            "--build-arg", f"BASE_IMAGE={base}", "--tag", tag, "--file", str(STANDINS / containerfile), str(STANDINS),
            timeout=1800,
        )  # fmt: skip
    # Stand-ins a changed Containerfile superseded (untagged, with the stand-ins' label): removed, nobody else's.
    podman("image", "prune", "--force", "--filter", "label=no.example.referral-broker.test-stand-in")


def run_name() -> str:
    return f"rbtest-{os.getpid()}-{secrets.token_hex(3)}"


@contextmanager
def removed_at_end(*names: str) -> Iterator[list[str]]:
    """Containers named in the list (the test may add to it) are removed when the block ends, however it ends."""
    started = list(names)
    try:
        yield started
    finally:
        for name in started:
            podman("rm", "--force", "--time", "10", "--ignore", name, check=False, timeout=120)


def broker_keys(folder: Path) -> Path:
    """The broker's keys made by the image itself (`keys init`, as docs/operations.md does it), owned by the
    image's user so the containers can read them."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, BROKER_UID, BROKER_UID)
    podman(
        "run", "--rm", *ULIMITS, "--network", "none", "-v", f"{folder}:/keys", "-e", "REFERRAL_BROKER_KEYS_DIR=/keys",
        IMAGE, "keys", "init",
    )  # fmt: skip
    assert (folder / "broker.pub").is_file(), "keys init made no broker.pub"
    return folder


def wait_for_status(url: str, status: int = 200, timeout: float = 180) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == status:
                return response
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"{url} did not answer {status} in {timeout} s (last: {last!r})")


def wait_until_healthy(container: str, timeout: float = 120) -> str:
    """`podman healthcheck run` (the image's HEALTHCHECK) until it passes; its output."""
    deadline = time.monotonic() + timeout
    result = None
    while time.monotonic() < deadline:
        result = podman("healthcheck", "run", container, check=False, timeout=60)
        if result.returncode == 0:
            return result.stdout.strip()
        time.sleep(2)
    raise AssertionError(f"the healthcheck of {container} did not pass: {result}")
