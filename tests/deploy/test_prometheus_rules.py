"""The Prometheus rules ship once: Compose's Prometheus and the Kubernetes PrometheusRule load the
same groups (the platform alerts and the recording rules the dashboards read), and every recorded
series a dashboard reads is one of them."""

from __future__ import annotations

import fnmatch
import math
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


def test_the_recording_rules_follow_the_naming_convention_and_evaluate_every_four_minutes() -> None:
    (dashboards_group,) = [g for g in rules_file_groups() if g["name"] == "etl-monitor.dashboards"]
    # Within the 5-minute lookback and the rate5m windows (no gap between two evaluations).
    assert dashboards_group["interval"] == "4m"
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


def _panel_expr(title_start: str, ref: str, **picks: str) -> str:
    from tests.grafana.dashboards import dashboards, interpolate, variable_defaults

    board = dashboards()["etl-transaction-monitoring"]
    (target,) = [
        t
        for t in targets(PROMETHEUS)
        if t.dashboard == "etl-transaction-monitoring"
        and t.panel["title"].startswith(title_start)
        and t.target["refId"] == ref
    ]
    return interpolate(target.target["expr"], {**variable_defaults(board), **picks})


def _team(i: int) -> str:
    return "Team A" if i % 2 else "Team B"


def test_the_recorded_panels_on_two_web_pods_with_twelve_loaders(tmp_path: Path) -> None:
    """promtool's rule unit test (Prometheus's own evaluator, on a timeline the test writes): 12
    loaders in two teams, scraped from two web pods that each count their own signals, one loader
    whose team the two pods disagree on for a moment (a rename between their database reads).
    Loader i stores 2i SUCCESS signals a second (i on each pod), plus one FAILED on pod web-1."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if IN_CI:
            pytest.fail("promtool (Debian's prometheus package) is required in CI")
        pytest.skip("promtool is not installed")
    loaders = {i: f"L{i:02d}" for i in range(1, 13)}
    series = []
    for pod in ("web-1", "web-2"):
        common = f'environment="prod", job="etl-monitor-web", pod="{pod}"'
        for i, code in loaders.items():
            team = "Team Z" if (code, pod) == ("L01", "web-2") else _team(i)
            for status, value in (("ok", 1), ("late", 0)):
                labels = f'{common}, loader_code="{code}", owner_team="{team}", status="{status}"'
                series.append({"series": f"loader_status{{{labels}}}", "values": f"{value}+0x30"})
            labels = f'{common}, loader_code="{code}", validation_status="SUCCESS"'
            series.append({"series": f"signals_received_total{{{labels}}}", "values": f"0+{60 * i}x30"})
            if pod == "web-1":
                labels = f'{common}, loader_code="{code}", validation_status="FAILED"'
                series.append({"series": f"signals_received_total{{{labels}}}", "values": "0+60x30"})
    # Runs of L05 take 400 s, of L06 20 s: one a minute on web-1.
    for code, inside in (
        ("L05", {"15": 0, "30": 0, "300": 0, "600": 1, "+Inf": 1}),
        ("L06", {"15": 0, "30": 1, "+Inf": 1}),
    ):
        for le, step in inside.items():
            labels = f'environment="prod", job="etl-monitor-web", pod="web-1", loader_code="{code}", le="{le}"'
            series.append({"series": f"loader_execution_seconds_bucket{{{labels}}}", "values": f"0+{step}x30"})

    def recorded(i: int, value: float) -> dict:
        labels = f'environment="prod", loader_code="{loaders[i]}", owner_team="{_team(i)}"'
        return {"labels": f"loader:signals_received:rate5m{{{labels}}}", "value": value}

    def by_status(success: float, failed: float) -> list[dict]:
        return [
            {"labels": '{validation_status="SUCCESS"}', "value": success},
            {"labels": '{validation_status="FAILED"}', "value": failed},
        ]

    checks = [
        # L01 is counted once, under one of its two team names, not twice.
        ("sum without (owner_team) (loader:signals_received:rate5m{loader_code='L01'})",
         [{"labels": '{environment="prod", loader_code="L01"}', "value": 3}]),
        ("count(loader:signals_received:rate5m)", [{"labels": "{}", "value": 12}]),
        # The funnel by loader: the 10 busiest (L01 and L02 are the quietest), at their rates.
        (_panel_expr("Signal ingestion funnel", "A"), [recorded(i, 2 * i + 1) for i in range(3, 13)]),
        (_panel_expr("Signal ingestion funnel", "A", team="Team B"), [recorded(i, 2 * i + 1) for i in range(2, 13, 2)]),
        (_panel_expr("Signal ingestion funnel", "A", loader="L02"), [recorded(2, 5)]),
        # The funnel by status: every loader, or one team's.
        (_panel_expr("Signal ingestion funnel", "B"), by_status(success=156, failed=12)),
        (_panel_expr("Signal ingestion funnel", "B", team="Team B"), by_status(success=84, failed=6)),
        # The heatmap: each loader's p99 over the hour, interpolated in its bucket as
        # histogram_quantile does; loaders without runs have no row.
        (_panel_expr("p99 loader execution time", "A"),
         [{"labels": '{loader_code="L05"}', "value": 300 + 300 * 0.99},
          {"labels": '{loader_code="L06"}', "value": 15 + 15 * 0.99}]),
    ]  # fmt: skip

    def rounded(sample: dict) -> dict:  # as round() answers: no metric name, value v * 1000 rounded / 1000
        return {
            "labels": re.sub(r"^[\w:]+", "", sample["labels"]),
            "value": math.floor(sample["value"] * 1000 + 0.5) / 1000,
        }

    unit = {
        "rule_files": [str(RULES_FILE)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                # Rounded to 0.001: a sum's last bit depends on the order Prometheus adds in.
                "promql_expr_test": [
                    {"expr": f"round({e}, 0.001)", "eval_time": "30m", "exp_samples": [rounded(x) for x in s]}
                    for e, s in checks
                ],
            }
        ],
    }
    (tmp_path / "panels.test.yaml").write_text(yaml.safe_dump(unit, sort_keys=False))
    out = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "panels.test.yaml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
