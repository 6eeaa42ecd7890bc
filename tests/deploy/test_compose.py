"""deploy/compose.yaml itself brought up with podman-compose, and one referral walked through it: submitted to the api
the compose file publishes, dispatched by its worker, pulled and decrypted by the clinic tool outside.

What is test-only, and nothing else: the environment variables the compose file reads (REFERRAL_BROKER_SECRETS for a
temporary secrets folder made as docs/operations.md makes deploy/secrets/, REFERRAL_BROKER_PORT for a free port,
REFERRAL_BROKER_PUBLIC_URL, and the controller and processors that deploy/.env would give), podman's global options
and default ulimits for this machine (CONTAINERS_CONF), and the images postgres:15-bookworm and redis:7-bookworm,
which cannot be pulled here: TEST STAND-INS built from Debian's packages on the same local base
(tests/deploy/standins/) carry their names.

podman 4.3 cannot wait for `service_healthy` (podman-compose ignores it before podman 4.6), takes
`service_completed_successfully` as "stopped" whatever the exit code, and fails to start a container whose
`--requires` chain is two deep ("depends on container … not found in input list"). So the test walks the file's
depends_on itself: `up postgres redis`, their compose healthchecks until they pass, `up --no-deps migrate` and its
exit code, then `up --no-deps api worker`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from devstack import free_port
from tests.conftest import EXAMPLE_ORGANISATION_NUMBER, referral_json
from tests.deploy.containers import (
    BROKER_UID,
    ROOT,
    broker_keys,
    build_image,
    build_standins,
    podman,
    run_name,
    skip_without_podman,
    wait_for_status,
    wait_until_healthy,
)
from tests.processes import program, run

pytestmark = [pytest.mark.container, skip_without_podman()]

COMPOSE = ROOT / "deploy" / "compose.yaml"
PASSPHRASE = "clinic passphrase for tests"
CANARY = "CANARY-COMPOSE-91B2 shoulder pain when lifting"
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def make_secrets(folder: Path) -> Path:
    """deploy/secrets/ as docs/operations.md makes it, in a temporary folder: the files the broker reads are its
    user's (uid 10001), the servers' passwords root's (their images read them before dropping privileges)."""
    folder.mkdir(mode=0o700)
    postgres_password, redis_password = secrets.token_urlsafe(24), secrets.token_hex(24)
    files = {
        "postgres_password": postgres_password,
        "redis_password": redis_password,
        "database_url": f"postgresql://broker:{postgres_password}@postgres:5432/referral_broker",
        "redis_url": f"redis://:{redis_password}@redis:6379/0",
        "metrics_token": secrets.token_hex(32),
    }
    for name, value in files.items():
        path = folder / name
        path.write_text(value)
        path.chmod(0o600)
        if name not in ("postgres_password", "redis_password"):
            os.chown(path, BROKER_UID, BROKER_UID)
    folder.chmod(0o755)
    broker_keys(folder / "broker_keys")
    return folder


def test_compose_file_brings_up_the_broker_and_carries_a_referral(tmp_path: Path) -> None:
    build_image()
    build_standins()
    project = run_name()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    conf = tmp_path / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(conf),
        "REFERRAL_BROKER_SECRETS": str(make_secrets(tmp_path / "secrets")),
        "REFERRAL_BROKER_PORT": str(port),
        "REFERRAL_BROKER_PUBLIC_URL": url,
        # deploy/.env at an operator's: who the privacy statement names (compose refuses to start without them)
        "REFERRAL_BROKER_CONTROLLER_NAME": "Testformidleren AS",
        "REFERRAL_BROKER_CONTROLLER_ORG_NUMBER": EXAMPLE_ORGANISATION_NUMBER,
        "REFERRAL_BROKER_CONTROLLER_ADDRESS": "Testveien 1, 0150 Oslo",
        "REFERRAL_BROKER_CONTROLLER_EMAIL": "personvern@example.no",
        "REFERRAL_BROKER_PROCESSORS": "Test Drift AS (servers, Norway)",
    }
    compose = [str(Path(program("referral-broker")).parent / "podman-compose"), "-f", str(COMPOSE), "-p", project]

    def compose_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*compose, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
        )
        assert result.returncode == 0, f"podman-compose {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def container(service: str) -> str:
        return f"{project}_{service}_1"

    try:
        # In the order the file's depends_on gives, one step at a time (see the module's docstring).
        compose_run("up", "-d", "--no-build", "postgres", "redis")
        wait_until_healthy(container("postgres"))
        wait_until_healthy(container("redis"))
        compose_run("up", "-d", "--no-build", "--no-recreate", "--no-deps", "migrate")
        exit_code = podman("wait", container("migrate"), timeout=300).stdout.strip()
        assert exit_code == "0", podman("logs", container("migrate")).stderr
        compose_run("up", "-d", "--no-build", "--no-recreate", "--no-deps", "api", "worker")

        ready = wait_for_status(f"{url}/readyz")
        assert ready.status_code == 200
        wait_until_healthy(container("api"))
        # The api's metrics token came from its secret file: /metrics asks for it.
        assert httpx.get(f"{url}/metrics", timeout=30).status_code == 401
        token = (tmp_path / "secrets" / "metrics_token").read_text()
        scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert scraped.status_code == 200, scraped.text
        api = json.loads(podman("inspect", container("api")).stdout)[0]
        assert api["HostConfig"]["ReadonlyRootfs"] is True
        assert api["Config"]["User"] == f"{BROKER_UID}:{BROKER_UID}"

        clinic_env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "REFERRAL_CLINIC_PASSPHRASE": PASSPHRASE,
            "REFERRAL_CLINIC_KDF_PROFILE": "interactive",
        }
        clinic = tmp_path / "clinic"
        tool = program("referral-clinic")
        keys = tmp_path / "secrets" / "broker_keys"
        run(
            [tool, "init", "--dir", str(clinic), "--broker", url, "--broker-key", str(keys / "broker.pub"),
             "--organisation-number", EXAMPLE_ORGANISATION_NUMBER,
             "--slug", "klinikk-compose", "--name", "Klinikk Compose"],
            clinic_env,
        )  # fmt: skip
        fingerprint = run([tool, "fingerprint", "--dir", str(clinic)], clinic_env).stdout.strip()
        # The operator's commands run in the api's container, with its secrets, as an operator would.
        operator = ["exec", "-i", container("api"), "referral-broker", "clinic"]
        added = podman(*operator, "add", "--enrollment", "/dev/stdin", input=(clinic / "enrollment.json").read_text())
        assert fingerprint in added.stdout
        podman(*operator, "verify", "klinikk-compose", "--fingerprint", fingerprint.lower())

        response = httpx.post(
            f"{url}/api/v1/referrals", json=referral_json(["klinikk-compose"], description=CANARY), timeout=30
        )
        assert response.status_code == 201, response.text
        reference = response.json()["reference"]

        inbox = tmp_path / "inbox"
        received_file = inbox / f"{reference}.json"
        for _ in range(60):  # the worker dispatches at its own pace: pull until it has, two minutes at most
            run([tool, "pull", "--dir", str(clinic), "--out", str(inbox)], clinic_env)
            if received_file.exists():
                break
            time.sleep(2)
        assert received_file.exists(), "the clinic received nothing in two minutes"
        received = json.loads(received_file.read_text())
        assert received["need"] == {"category": "physiotherapy", "description": CANARY}

        for service in ("api", "worker"):
            logs = podman("logs", container(service))
            assert CANARY not in logs.stdout + logs.stderr
    finally:
        subprocess.run(
            [*compose, "down", "--volumes", "--timeout", "10"],
            env=env, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT,
        )  # fmt: skip
