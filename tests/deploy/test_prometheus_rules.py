"""The Prometheus rules ship once: Compose's Prometheus and the Kubernetes PrometheusRule load the
same groups (the platform alerts and the recording rules the dashboards read), and every recorded
series a dashboard reads is one of them."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from tests.grafana.dashboards import PROMETHEUS, targets

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "etl-monitor.yml"
PROMETHEUS_RULE = ROOT / "deploy" / "kubernetes" / "components" / "prometheus-operator" / "prometheusrule.yaml"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# level:metric:operations (https://prometheus.io/docs/practices/rules/)
RECORDED = re.compile(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b")


def rules_file_groups() -> list[dict]:
    return yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_compose_and_kubernetes_load_the_same_groups() -> None:
    (rule,) = [d for d in yaml.safe_load_all(PROMETHEUS_RULE.read_text()) if d]
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules_file_groups()
    names = [g["name"] for g in rules_file_groups()]
    assert names == ["etl-monitor.platform", "etl-monitor.dashboards"]


def test_compose_prometheus_reads_the_rules_file() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    volumes = [v.split(":") for v in compose["services"]["prometheus"]["volumes"]]  # source:target[:mode]
    (inside,) = [v[1] for v in volumes if v[0] == "./prometheus/rules"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    loaded = [
        name
        for pattern in config["rule_files"]
        for name in [str(PurePosixPath(inside) / p.name) for p in RULES_FILE.parent.iterdir()]
        if fnmatch.fnmatch(name, pattern)
    ]
    assert loaded == [f"{inside}/{RULES_FILE.name}"]


def test_the_recording_rules_follow_the_naming_convention_and_evaluate_every_minute() -> None:
    (dashboards_group,) = [g for g in rules_file_groups() if g["name"] == "etl-monitor.dashboards"]
    assert dashboards_group["interval"] == "1m"
    for rule in dashboards_group["rules"]:
        level, metric, operation = rule["record"].split(":")
        assert level and operation, rule["record"]
        assert not metric.endswith("_total"), f"{rule['record']}: a rate drops the counter's _total"
        # Each is computed from scraped series alone: `promtool tsdb create-blocks-from rules`
        # cannot backfill a rule that reads another recorded series.
        assert not RECORDED.search(rule["expr"]), rule["record"]


def test_every_recorded_series_a_dashboard_reads_is_recorded() -> None:
    recorded = {r["record"] for g in rules_file_groups() for r in g["rules"] if "record" in r}
    read = {name for t in targets(PROMETHEUS) for name in RECORDED.findall(t.target["expr"])}
    assert read, "the dashboards read no recorded series (the transaction dashboard's funnel should)"
    assert read <= recorded, f"read but not recorded: {sorted(read - recorded)}"


def test_promtool_accepts_the_rules_file() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool (Debian's prometheus package) is required in CI")
        pytest.skip("promtool is not installed")
    out = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 8 rules found" in out.stdout
