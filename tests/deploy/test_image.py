"""The broker's image built here with podman (deploy/build-image, as `make image`) and run as docs/operations.md
runs it: no compiler or package caches in it, uid 10001, a read-only root; `migrate`, `serve` and `worker`
containers against this run's private PostgreSQL and Redis; `/readyz` and the image's HEALTHCHECK; and one referral
submitted to the containerised api, dispatched by the containerised worker and pulled and decrypted by the clinic
tool running OUTSIDE the containers (this repository's venv).

The containers reach the test's servers on the host's loopback through slirp4netns (`allow_host_loopback`: the host's
127.0.0.1 is 10.0.2.2 inside), and the api's port 8000 (the one its HEALTHCHECK asks) is published on a free
loopback port. Selected with `-m container`; skipped where podman is missing or cannot run containers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from devstack import free_port
from tests.conftest import EXAMPLE_ORGANISATION_NUMBER, Servers, referral_json
from tests.deploy.containers import (
    BROKER_UID,
    ULIMITS,
    broker_keys,
    build_image,
    podman,
    removed_at_end,
    run_name,
    skip_without_podman,
    wait_for_status,
    wait_until_healthy,
)
from tests.processes import program, run, wait_for_value

pytestmark = [pytest.mark.container, skip_without_podman()]

HOST_FROM_CONTAINER = "10.0.2.2"  # slirp4netns's address for the host's loopback
NETWORK = ["--network", "slirp4netns:allow_host_loopback=true"]
# How docs/operations.md and deploy/compose.yaml run the broker's containers.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *ULIMITS]
PASSPHRASE = "clinic passphrase for tests"
CANARY = "CANARY-IMAGE-4C1D knee pain after skiing"


@pytest.fixture(scope="module")
def image() -> str:
    name, _ = build_image()
    return name


def test_run_stage_has_no_compiler_no_package_caches_and_is_not_root(image: str) -> None:
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    assert inspected["Config"]["User"] == f"{BROKER_UID}:{BROKER_UID}"
    env = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    assert not {"PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"} & env.keys(), "the build's CA secret is baked in"
    healthcheck = inspected.get("Healthcheck") or {}
    assert healthcheck.get("Test", [""])[0] == "CMD", "the HEALTHCHECK was dropped (build with --format docker)"

    whoami = podman("run", "--rm", *HARDENED, "--network", "none", "--entrypoint", "id", image, "-u").stdout
    assert whoami.strip() == str(BROKER_UID)

    # As root, to see every folder: what a compiler or a package manager would have left behind.
    look = podman(
        "run", "--rm", "--user", "0", "--network", "none", *ULIMITS, "--entrypoint", "sh", image, "-c",
        "for p in gcc cc c++ g++ clang x86_64-linux-gnu-gcc-12 make; do command -v $p; done;"
        " find / -xdev \\( -name 'gcc*' -o -name 'cc1*' \\) -type f -perm -u+x -print;"
        " echo LISTS; ls -A /var/lib/apt/lists; echo CACHES;"
        " find / -xdev \\( -path '*/.cache/pip' -o -path '*/pip/http*' -o -name '*.whl' -o -name '*.deb' \\) -print;"
        " echo PIP; ls /opt/referral-broker/bin/ | grep -x 'pip.*' || true;"
        " echo SECRETS; ls -A /run/secrets 2>/dev/null || true",
    ).stdout  # fmt: skip
    compilers, _, rest = look.partition("LISTS\n")
    lists, _, rest = rest.partition("CACHES\n")
    caches, _, rest = rest.partition("PIP\n")
    pip, _, build_secrets = rest.partition("SECRETS\n")
    assert compilers.strip() == "", f"compilers in the run stage: {compilers}"
    assert lists.strip() == "", f"apt lists left in the image: {lists}"
    assert caches.strip() == "", f"package caches left in the image: {caches}"
    assert pip.strip() == "", "pip is in the broker's venv: the image installs nothing at run time"
    assert build_secrets.strip() == "", f"the build's secrets are in the image: {build_secrets}"


def test_image_size_and_python_packages_are_reported(image: str) -> None:
    """The figures docs/operations.md records (run with -s to see them)."""
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    listing = podman(
        "run", "--rm", "--network", "none", *HARDENED, "--entrypoint", "python", image, "-c",
        "import importlib.metadata as m;"
        " print('\\n'.join(sorted(f'{d.name}=={d.version}' for d in m.distributions())))",
    ).stdout.split()  # fmt: skip
    names = {line.split("==")[0].lower() for line in listing}
    assert {"referral-broker", "referral-protocol", "litestar", "uvicorn", "asyncpg", "arq", "cryptography"} <= names
    assert not names & {"pip", "pytest", "mypy", "ruff", "setuptools", "referral-clinic", "playwright"}, names
    print(f"\nimage {image}: {size / 1e6:.0f} MB, {len(listing)} Python distributions:\n" + "\n".join(listing))
    assert size < 500e6, f"the image grew to {size / 1e6:.0f} MB"


@pytest.fixture
def database(servers: Servers) -> Iterator[tuple[str, str]]:
    """A new, empty database for the containers' `migrate`: (its URL from here, its URL from a container)."""
    import asyncio

    name = f"rb_image_{os.getpid()}_{secrets.token_hex(3)}"
    base = servers.postgres_url.rpartition("/")[0]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(servers.postgres_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = f"{base}/{name}"
    try:
        yield url, url.replace("127.0.0.1", HOST_FROM_CONTAINER)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_serve_and_worker_containers_carry_a_referral_to_a_clinic_outside(
    image: str, database: tuple[str, str], servers: Servers, tmp_path: Path
) -> None:
    database_url, database_url_inside = database
    redis_url_inside = servers.redis_url.rsplit("/", 1)[0].replace("127.0.0.1", HOST_FROM_CONTAINER) + "/7"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    keys = broker_keys(tmp_path / "keys")
    environment = [
        "-e", f"DATABASE_URL={database_url_inside}", "-e", f"REDIS_URL={redis_url_inside}",
        "-e", f"REFERRAL_BROKER_PUBLIC_URL={url}", "-e", "REFERRAL_BROKER_SUBMIT_RATE=0",
        "-v", f"{keys}:/run/secrets/referral-broker-keys:ro",
    ]  # fmt: skip
    name = run_name()
    with removed_at_end() as started:
        migrate = podman("run", "--rm", *HARDENED, *NETWORK, *environment, image, "migrate", timeout=300)
        assert migrate.returncode == 0

        started += [f"{name}-api", f"{name}-worker"]
        published = ["-p", f"127.0.0.1:{port}:8000"]
        podman("run", "-d", "--name", f"{name}-api", *HARDENED, *NETWORK, *published, *environment, image)
        podman("run", "-d", "--name", f"{name}-worker", *HARDENED, *NETWORK, *environment, image, "worker")
        ready = wait_for_status(f"{url}/readyz")
        assert ready.status_code == 200
        wait_until_healthy(f"{name}-api")
        # The package data came along: a page from its template in the bokmål catalogue, and its stylesheet.
        page = httpx.get(f"{url}/", timeout=30, headers={"Accept-Language": "nb"})
        assert page.status_code == 200 and '<html lang="nb"' in page.text, page.text[:500]
        assert httpx.get(f"{url}/static/site.css", timeout=30).status_code == 200

        # A clinic made by the clinic tool outside, enrolled and verified with the operator CLI inside the image.
        clinic_env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "REFERRAL_CLINIC_PASSPHRASE": PASSPHRASE,
            "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
        }
        clinic = tmp_path / "clinic"
        tool = program("referral-clinic")
        run(
            [tool, "init", "--dir", str(clinic), "--broker", url, "--broker-key", str(keys / "broker.pub"),
             "--organisation-number", EXAMPLE_ORGANISATION_NUMBER,
             "--slug", "klinikk-bilde", "--name", "Klinikk Bilde"],
            clinic_env,
        )  # fmt: skip
        fingerprint = run([tool, "fingerprint", "--dir", str(clinic)], clinic_env).stdout.strip()
        operator = ["run", "--rm", "-i", *HARDENED, *NETWORK, *environment, image, "clinic"]
        enrollment = (clinic / "enrollment.json").read_text()
        added = podman(*operator, "add", "--enrollment", "/dev/stdin", input=enrollment)
        assert fingerprint in added.stdout
        podman(*operator, "verify", "klinikk-bilde", "--fingerprint", fingerprint.lower())

        body = referral_json(["klinikk-bilde"], description=CANARY)
        response = httpx.post(f"{url}/api/v1/referrals", json=body, timeout=30)
        assert response.status_code == 201, response.text
        reference = response.json()["reference"]

        import asyncio

        asyncio.run(
            wait_for_value(
                database_url,
                "SELECT count(*) FROM audit_events WHERE action = 'delivery.dispatched'",
                1,
                timeout=120,
            )
        )
        inbox = tmp_path / "inbox"
        pulled = run([tool, "pull", "--dir", str(clinic), "--out", str(inbox)], clinic_env)
        assert pulled.returncode == 0
        received = json.loads((inbox / f"{reference}.json").read_text())
        assert received["need"] == {"category": "physiotherapy", "description": CANARY}
        assert received["patient"]["name"] == "Kari Nordmann"

        # The containers' logs hold no plaintext of the referral.
        for container in (f"{name}-api", f"{name}-worker"):
            logs = podman("logs", container)
            assert CANARY not in logs.stdout + logs.stderr
            assert "Kari Nordmann" not in logs.stdout + logs.stderr
    shutil.rmtree(keys, ignore_errors=True)
