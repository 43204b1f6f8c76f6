"""The Kubernetes manifests and the Compose file agree with each other and with the application.

The overlays are rendered with ``kubectl kustomize`` (what an operator runs); the schema checks
are ``make deploy-check``'s. These tests check what no schema can: that a Service reaches its pods,
that probes hit a port the container opens and a path the app answers, that every setting the app
reads is configured, and that the configured values pass ``manage.py check --deploy``.
"""

from __future__ import annotations

import ast
import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import Resolver404, resolve

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(path.name for path in (KUBERNETES / "overlays").iterdir())
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if IN_CI:
            pytest.fail("kubectl (for `kubectl kustomize`) is required in CI; .ci/deploy-check installs it")
        pytest.skip("kubectl is not installed (needed to render the kustomize overlays)")
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / "overlays" / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def objects(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def workloads(overlay: str) -> list[dict[str, Any]]:
    return objects(overlay, "Deployment") + objects(overlay, "Job")


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def settings_variables() -> set[str]:
    """Every environment variable etl_monitor/settings.py reads through ``env.<cast>("NAME", …)``."""
    tree = ast.parse((ROOT / "etl_monitor" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "env"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


# Read by the processes rather than the settings: deploy/gunicorn.conf.py and deploy/entrypoint.sh.
PROCESS_VARIABLES = {
    "WEB_CONCURRENCY",
    "WEB_THREADS",
    "WEB_TIMEOUT",
    "WEB_PORT",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_CONTROL_SOCKET",
    "ETL_MONITOR_VAR_DIR",
    "LOG_LEVEL",
}


def secret_template() -> dict[str, str]:
    return yaml.safe_load((KUBERNETES / "base" / "secret.template.yaml").read_text())["stringData"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_the_pods_of_a_deployment_and_their_port(overlay):
    deployments = objects(overlay, "Deployment")
    for service in objects(overlay, "Service"):
        selector = service["spec"]["selector"]
        matching = [d for d in deployments if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matching, f"Service {service['metadata']['name']} selects no Deployment's pods ({selector})"
        for deployment in matching:
            ports = {p["name"] for c in pod_spec(deployment)["containers"] for p in c.get("ports", [])}
            for port in service["spec"]["ports"]:
                assert port["targetPort"] in ports, (service["metadata"]["name"], port, ports)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_selector_matches_its_own_pod_labels(overlay):
    for workload in objects(overlay, "Deployment"):
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items(), workload["metadata"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_autoscalers_and_policies_point_at_real_workloads(overlay):
    deployments = {d["metadata"]["name"]: d for d in objects(overlay, "Deployment")}
    for hpa in objects(overlay, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments, hpa["metadata"]["name"]
        assert hpa["spec"]["scaleTargetRef"]["name"] != "etl-monitor-beat", "the scheduler must never autoscale"
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for budget in objects(overlay, "PodDisruptionBudget"):
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), budget["metadata"]["name"]
    web = deployments["etl-monitor-web"]["spec"]["template"]["metadata"]["labels"]
    policy = next(p for p in objects(overlay, "NetworkPolicy") if p["metadata"]["name"] == "etl-monitor-web")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= web.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_an_open_port_and_a_path_the_app_answers(overlay):
    for workload in workloads(overlay):
        for container in pod_spec(workload)["containers"]:
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind, {}).get("httpGet")
                if not probe:
                    continue
                assert probe["port"] in ports or probe["port"] in ports.values(), (container["name"], kind, probe)
                try:
                    view = resolve(probe["path"])
                except Resolver404:
                    pytest.fail(f"{container['name']} {kind} path {probe['path']} is not a URL of the app")
                assert view.url_name in {"healthz", "readyz"}, (kind, view.url_name)
            if container["name"] == "web":
                assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
                assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert str(ports["http"]) == env["WEB_PORT"], "gunicorn binds WEB_PORT; the port must be it"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_is_locked_down_and_sized(overlay):
    for workload in workloads(overlay):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name  # the image's user
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), (name, container["name"])
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), (name, container["name"])
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            # The only places the app writes: its var directory (metrics, gunicorn socket) and /tmp.
            assert {"/var/lib/etl-monitor", "/tmp"} <= mounts, (name, container["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_scheduler_and_it_is_replaced_not_rolled(overlay):
    beats = [d for d in objects(overlay, "Deployment") if "beat" in pod_spec(d)["containers"][0].get("args", [])]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"]["type"] == "Recreate"  # the old pod stops before the new one starts


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_app_reads_is_configured(overlay):
    """The ConfigMap and the Secret template together name every variable settings.py reads."""
    configmap = next(c for c in objects(overlay, "ConfigMap") if c["metadata"]["name"].startswith("etl-monitor-config"))
    configured = set(configmap["data"]) | set(secret_template())
    missing = settings_variables() - configured
    assert not missing, f"not in the ConfigMap nor the Secret template: {sorted(missing)}"
    unknown = set(configmap["data"]) - settings_variables() - PROCESS_VARIABLES
    assert not unknown, f"the ConfigMap sets variables the app never reads: {sorted(unknown)}"
    for workload in workloads(overlay):
        for container in pod_spec(workload)["containers"]:
            sources = {ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]}
            assert sources == {configmap["metadata"]["name"], "etl-monitor-secrets"}, workload["metadata"]["name"]


def test_secrets_are_only_in_the_secret_template():
    configmap = yaml.safe_load((KUBERNETES / "base" / "configmap.yaml").read_text())["data"]
    secretish = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|DATABASE_URL|REDIS_URL")
    not_secrets = {"API_TOKEN_TTL_DAYS", "AUTH_TOKEN_THROTTLE"}
    leaked = sorted(name for name in configmap if secretish.search(name) and name not in not_secrets)
    assert not leaked, f"secret-looking settings in the ConfigMap: {leaked}"
    assert all(value in ("", "change-me") or "change-me" in value for value in secret_template().values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configured_values_pass_check_deploy(overlay, tmp_path):
    """The ConfigMap's values with real secrets in place of the template's: the settings load and
    ``manage.py check --deploy`` reports nothing (as the web pods would start)."""
    configmap = next(c for c in objects(overlay, "ConfigMap") if c["metadata"]["name"].startswith("etl-monitor-config"))
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    env |= configmap["data"]
    env |= {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "METRICS_TOKEN": secrets.token_urlsafe(32),
        "ETL_MONITOR_VAR_DIR": str(tmp_path / "var"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_compose_gives_every_app_service_the_required_settings():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    example = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy" / "example.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("migrate", "web", "worker", "beat"):
        env = services[name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "ALLOWED_HOSTS"} <= env.keys(), name
        assert env.keys() <= settings_variables() | PROCESS_VARIABLES | {"GRAFANA_DB_PASSWORD"}, name
        required = set(re.findall(r"\$\{(\w+):\?", " ".join(map(str, env.values()))))
        assert required <= example.keys(), f"{name}: {sorted(required - example.keys())} not in example.env"
        assert services[name]["read_only"] is True and services[name]["cap_drop"] == ["ALL"], name
    assert services["beat"]["deploy"]["replicas"] == 1
    for name in ("web", "worker", "beat", "grafana"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert not (ROOT / "deploy" / ".env").exists() or ".env" in (ROOT / ".gitignore").read_text()
