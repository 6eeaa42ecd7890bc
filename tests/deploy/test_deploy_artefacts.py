"""The deployment artefacts say what the code does: they parse, kustomize builds them, every command
they run exists in the CLI, every variable they set is one the configuration reads, the probes hit
real routes, and no secret is written in them."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from referral_broker.cli.broker import build_parser
from referral_broker.services.settings import Settings
from referral_broker.web.app import create_app

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = [DEPLOY / "k8s" / "base", DEPLOY / "k8s" / "overlays" / "production"]


class _Recorder(dict[str, str]):
    """An environment that remembers every variable the configuration asks for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def known_variables() -> set[str]:
    env = _Recorder({"DATABASE_URL": "postgresql://x/y"})
    Settings.from_env(env)
    return env.asked | {f"{name}_FILE" for name in env.asked}


def kustomize(folder: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to build the manifests (make test installs Debian's kubernetes-client)"
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if doc["kind"] in ("Deployment", "Job") else {}
    yield from pod.get("containers", [])


def _assert_is_cli_command(args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:  # argparse exits on an unknown command or option
        raise AssertionError(f"`referral-broker {' '.join(args)}` is not a command of the CLI") from exc


def _routes(keys_dir: Path) -> set[str]:
    app = create_app(Settings.from_env({"DATABASE_URL": "postgresql://x/y", "REFERRAL_BROKER_KEYS_DIR": str(keys_dir)}))
    return {route.path for route in app.routes}


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_builds_and_runs_only_real_commands(folder: Path, keys_dir: Path) -> None:
    docs = kustomize(folder)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert "Secret" not in kinds, "secrets are created out of band, never in the manifests"
    known = known_variables()
    routes = _routes(keys_dir)
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert set(doc["data"]) <= known, set(doc["data"]) - known
        for container in _containers(doc):
            _assert_is_cli_command(container["args"])
            assert {e["name"] for e in container.get("env", [])} <= known
            for probe in ("readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["path"] in routes
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "limits" in container["resources"] and "requests" in container["resources"]


def test_api_has_probes_on_readyz_and_healthz_and_the_worker_none() -> None:
    docs = kustomize(OVERLAYS[1])
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    api = next(_containers(by_name["referral-broker-api"]))
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert next(_containers(by_name["referral-broker-worker"]))["args"] == ["worker"]


def test_only_api_worker_and_migrations_reach_the_databases() -> None:
    policies = {d["metadata"]["name"]: d for d in kustomize(OVERLAYS[0]) if d["kind"] == "NetworkPolicy"}
    for name, port in (("referral-broker-postgresql", 5432), ("referral-broker-redis", 6379)):
        spec = policies[name]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        (rule,) = spec["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        (peer,) = rule["from"]
        components = next(e for e in peer["podSelector"]["matchExpressions"] if e["key"].endswith("component"))
        assert set(components["values"]) <= {"api", "worker", "migrate"}


def test_compose_file_runs_real_commands_with_known_variables_and_hides_redis() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    known = known_variables()
    for name in ("migrate", "api", "worker"):
        service = services[name]
        _assert_is_cli_command(service["command"])
        assert set(service["environment"]) <= known
    assert services["migrate"]["command"] == ["migrate"]
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]
    assert all(p.startswith("127.0.0.1:") for p in services["api"]["ports"])
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert "pgdata" in compose["volumes"]
    assert all("file" in s for s in compose["secrets"].values())
    text = (DEPLOY / "compose.yaml").read_text()
    assert not re.search(r"PASSWORD:\s*[^/\s]", text), "passwords come from secret files"


def test_container_image_is_multi_stage_non_root_without_compilers() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)
    assert len(stages) == 3  # preamble, build, run
    final = stages[-1]
    assert "build-essential" not in final and "gcc" not in final
    user = re.search(r"^USER (\S+)", final, flags=re.MULTILINE)
    assert user and not user.group(1).startswith(("0", "root"))
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'ENTRYPOINT ["referral-broker"]' in final
    cmd = re.search(r"^CMD (\[.*\])", final, flags=re.MULTILINE)
    assert cmd
    _assert_is_cli_command(yaml.safe_load(cmd.group(1)))


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_are_sandboxed_and_run_real_commands(unit: Path) -> None:
    text = unit.read_text()
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes"):
        assert option in text
    exec_start = re.search(r"^ExecStart=(.+)$", text, flags=re.MULTILINE)
    assert exec_start
    program, *args = shlex.split(exec_start.group(1))
    assert program.endswith("/referral-broker")
    _assert_is_cli_command(args)
    assert "User=" in text and "User=root" not in text


def test_reverse_proxy_allows_only_tls_1_2_and_up_and_sends_hsts() -> None:
    text = (DEPLOY / "proxy" / "nginx-referral-broker.conf").read_text()
    (protocols,) = re.findall(r"ssl_protocols ([^;]+);", text)
    assert set(protocols.split()) == {"TLSv1.2", "TLSv1.3"}
    assert "Strict-Transport-Security" in text
    assert "access_log off" in text


METRICS_TOKEN_FILE = "REFERRAL_BROKER_METRICS_TOKEN_FILE"


def test_every_deployment_gives_the_api_its_metrics_token_from_a_secret() -> None:
    """serve refuses to start with an https public URL and no token (tests/deploy/test_deployment_defaults.py)."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    api = compose["services"]["api"]
    secret = api["environment"][METRICS_TOKEN_FILE].removeprefix("/run/secrets/")
    assert secret in api["secrets"] and "file" in compose["secrets"][secret]
    assert api["environment"]["REFERRAL_BROKER_PUBLIC_URL"].split(":-")[-1].startswith("https://")

    for folder in OVERLAYS:
        by_name = {d["metadata"]["name"]: d for d in kustomize(folder) if d["kind"] == "Deployment"}
        pod = by_name["referral-broker-api"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        path = next(e["value"] for e in container["env"] if e["name"] == METRICS_TOKEN_FILE)
        mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "referral-broker-metrics"

    unit = (DEPLOY / "systemd" / "referral-broker-api.service").read_text()
    assert re.search(r"^LoadCredential=metrics_token:/etc/referral-broker/\S+$", unit, flags=re.MULTILINE)
    assert f"Environment={METRICS_TOKEN_FILE}=%d/metrics_token" in unit


def test_reverse_proxy_cuts_off_slow_clients_and_caps_connections_per_address() -> None:
    text = (DEPLOY / "proxy" / "nginx-referral-broker.conf").read_text()
    directives = dict(re.findall(r"^\s*(client_header_timeout|client_body_timeout|limit_conn) ([^;]+);", text, re.M))
    assert int(directives["client_header_timeout"].rstrip("s")) <= 10
    assert int(directives["client_body_timeout"].rstrip("s")) <= 10
    zone, limit = directives["limit_conn"].split()
    assert re.search(rf"^limit_conn_zone \$binary_remote_addr zone={zone}:\w+;", text, flags=re.MULTILINE)
    assert 1 <= int(limit) <= 50


def test_every_configuration_variable_is_in_the_one_table() -> None:
    doc = (DEPLOY.parent / "docs" / "operations.md").read_text()
    table = doc[doc.index("## Configuration") :]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, flags=re.MULTILINE))
    read = {name for name in known_variables() if not name.endswith("_FILE")}
    assert read - documented == set(), "variables the configuration reads but the table does not explain"
    read_by_command_line_tools = {
        "REFERRAL_BROKER_OPERATOR_PASSWORD",
        "REFERRAL_CLINIC_PASSPHRASE",
        "REFERRAL_CLINIC_KDF_PROFILE",
    }
    assert documented - read - read_by_command_line_tools == set(), "documented variables nothing reads"


def test_compose_and_kubernetes_believe_forwarded_addresses_only_from_their_proxy() -> None:
    """Behind a proxy, the api must know the proxy, or every patient shares the proxy's submission limit."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    trusted = compose["services"]["api"]["environment"]["REFERRAL_BROKER_TRUSTED_PROXIES"]
    (subnet,) = (c["subnet"] for c in compose["networks"]["backend"]["ipam"]["config"])
    assert trusted == subnet, "compose trusts exactly its own network, through which the host's proxy comes"
    assert all(p.startswith("127.0.0.1:") for p in compose["services"]["api"]["ports"])

    docs = kustomize(OVERLAYS[0])
    (config,) = (d for d in docs if d["kind"] == "ConfigMap")
    variables = {k: v for k, v in config["data"].items() if not k.endswith("_FILE")}
    settings = Settings.from_env({**variables, "DATABASE_URL": "postgresql://x/y"})
    assert settings.trusted_proxies, "Kubernetes names the ingress's addresses"
    # Safe only because nothing but the ingress controller's pods may reach the api's port.
    (policy,) = (d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "referral-broker-api")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}


def test_reverse_proxy_waits_for_the_long_polling_inbox_and_stays_strict_elsewhere() -> None:
    """nginx must outwait a held inbox listing (`?wait=` up to MAX_WAIT s), or it cuts it with a 504; every
    other location keeps the short read timeout."""
    from referral_broker.services.inbox_waiting import MAX_WAIT

    text = (DEPLOY / "proxy" / "nginx-referral-broker.conf").read_text()
    locations = dict(re.findall(r"location ([^{]+?) \{(.*?)\n    \}", text, flags=re.S))
    read_timeout = {
        where: int(re.search(r"proxy_read_timeout (\d+)s;", body).group(1))  # type: ignore[union-attr]
        for where, body in locations.items()
    }
    assert read_timeout.pop("= /api/v1/clinic/inbox") >= MAX_WAIT + 10
    assert read_timeout and all(seconds <= 30 for seconds in read_timeout.values())
    assert "proxy_read_timeout" not in text.split("location", 1)[0]  # not raised for the whole server
