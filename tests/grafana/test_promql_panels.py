"""Every PromQL query of every dashboard, run by a real Prometheus on a day of data.

The app runs as production runs it (gunicorn, two workers, PostgreSQL); a day of loaders, runs,
signals and an incident is written through its API, then Prometheus (Debian's) scrapes it with the
target label ``environment="test"``, together with Debian's real node exporter and the doubles of
kube-state-metrics, the kubelet's cAdvisor and four Micrometer-instrumented services
(tests/grafana/exporters.py). Each panel target (``targets(PROMETHEUS)``) and each Prometheus
variable query is then asked as Grafana asks it: instant ones as instant queries, the others as
range queries, with the variables at their defaults and at one concrete value each. Each must
answer without error and with data, except those listed in ``EMPTY`` with the reason.

Prometheus loads the rules shipped in deploy/prometheus/rules/etl-monitor.yml (the recording rules
some panels read), evaluated every second instead of every 4 minutes so their series exist at once;
the panels that read them must show what the raw series say.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import _service_unavailable
from tests.grafana import exporters
from tests.grafana.dashboards import PROMETHEUS, Target, dashboards, interpolate, targets, variable_defaults, variables
from tests.integrations.prom import Prometheus
from tests.net import free_port
from tests.signals_app.served import gunicorn_serving

# django_db makes pytest-django create the test database, which the module's stack writes to.
pytestmark = [pytest.mark.services, pytest.mark.django_db]

ENVIRONMENT = "test"
RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules" / "etl-monitor.yml"

# Panel targets that may answer nothing here, each with the reason (dashboard / panel / refId).
# None today: every Prometheus panel has data on the generated day.
EMPTY: dict[str, str] = {}


@dataclass
class Stack:
    prometheus: Prometheus
    node_exporter: str  # its instance (host:port)
    loader: str  # a loader with runs, signals and missed now
    team: str


def _node_exporter(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    """Debian's real node exporter on a free loopback port."""
    port = free_port()
    log = open(tmp_path / "node-exporter.log", "wb")  # noqa: SIM115 — the process owns it until the end
    proc = subprocess.Popen(
        [shutil.which("prometheus-node-exporter") or "prometheus-node-exporter",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).status_code == 200:
                return proc, f"127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("the node exporter did not answer")


class Api:
    """The app's API as a person (user token) and as a job (ingest token) use it."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def call(self, method: str, path: str, body: Any, token: str, scheme: str = "Token") -> dict[str, Any]:
        answer = self.session.request(
            method, f"{self.base}{path}", json=body, headers={"Authorization": f"{scheme} {token}"}, timeout=30
        )
        assert answer.status_code in (200, 201), f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def day_of_data(base: str, editor_token: str, approver_token: str, team_slugs: dict[str, str]) -> dict[str, Any]:
    """Two loaders made and approved over the API (four eyes), a day of their runs with every final
    status, and signals of every validation status. SALES-HOURLY's last two runs are left running
    here and finished by ``live_traffic``: its last run is then 3 h old, so it is missed now."""
    api = Api(base)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    loaders = {
        "SALES-HOURLY": ("0 * * * *", team_slugs["sales"]),
        "BILLING-DAILY": ("30 2 * * *", team_slugs["billing"]),
    }
    ingest: dict[str, str] = {}
    for code, (cron, owner) in loaders.items():
        api.call("POST", "/api/v1/loaders/", {
            "loader_code": code, "name": f"{code} job", "owner": owner, "schedule_cron": cron,
            "schedule_timezone": "UTC", "grace_minutes": 15, "max_duration_minutes": 45, "default_severity": "HIGH",
        }, editor_token)  # fmt: skip
        api.call("POST", f"/api/v1/loaders/{code}/submit/", {}, editor_token)
        api.call("POST", f"/api/v1/loaders/{code}/approve/", {}, approver_token)
        ingest[code] = api.call(
            "POST", f"/api/v1/loaders/{code}/tokens/", {"name": "job", "kind": "API"}, editor_token
        )["token"]
    pending = []
    for hours in range(24, 2, -1):  # hourly, 24 h ago … 3 h ago
        code = "SALES-HOURLY" if hours % 6 else "BILLING-DAILY"
        run_id = str(uuid.uuid4())
        started = now - dt.timedelta(hours=hours, minutes=-1)
        api.call("POST", "/api/v1/runs/", {"loader_code": code, "run_id": run_id, "started_at": _iso(started)},
                 ingest[code], "Bearer")  # fmt: skip
        if code == "SALES-HOURLY" and hours <= 4:
            pending.append((code, run_id, started))
            continue
        status = "FAILED" if hours in (20, 9) else "TIMED_OUT" if hours == 14 else "SUCCEEDED"
        finish = {"status": status, "finished_at": _iso(started + dt.timedelta(minutes=hours % 7 + 1))}
        if status != "SUCCEEDED":
            finish["error_text"] = "ORA-01017: invalid username/password"
        api.call("PATCH", f"/api/v1/runs/{run_id}/", finish, ingest[code], "Bearer")
        batch = [
            {"loader_code": code, "signal_key": key, "signal_value": value, "validation_status": outcome,
             "metric_type": "ROW_COUNT", "captured_at": _iso(started + dt.timedelta(minutes=2))}
            for key, value, outcome in (
                ("rows_loaded", 1200 + hours, "SUCCESS" if status == "SUCCEEDED" else "FAILED"),
                ("rows_rejected", hours, "WARNING" if hours % 4 == 0 else "SUCCESS"),
            )
        ]  # fmt: skip
        api.call("POST", "/api/v1/signals/", batch, ingest[code], "Bearer")
    return {"api": api, "ingest": ingest, "pending": pending}


def live_traffic(data: dict[str, Any], seconds: float) -> None:
    """What the jobs send while Prometheus watches: the counters rise between two scrapes, so every
    ``rate()`` has something to measure. SALES-HOURLY's running runs finish here."""
    api: Api = data["api"]
    for code, run_id, started in data["pending"]:
        finish = {"status": "SUCCEEDED", "finished_at": _iso(started + dt.timedelta(minutes=9))}
        api.call("PATCH", f"/api/v1/runs/{run_id}/", finish, data["ingest"][code], "Bearer")
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        for code, token in data["ingest"].items():
            outcome = ("SUCCESS", "FAILED", "WARNING")[n % 3]
            body = [{"loader_code": code, "signal_key": "heartbeat", "signal_value": n, "validation_status": outcome}]
            api.call("POST", "/api/v1/signals/", body, token, "Bearer")
        n += 1
        time.sleep(0.4)


@pytest.fixture(scope="module")
def stack(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack once for the module's tests (starting it and writing the day takes ~20 s).
    The served app writes to the test database from its own processes, so the rows are removed
    at the end as a transactional test's teardown removes them (a flush; the seeds come back)."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        _service_unavailable("PostgreSQL (DATABASE_URL)")
    for binary, what in (
        ("prometheus", "Prometheus (the Debian package `prometheus`)"),
        ("prometheus-node-exporter", "The node exporter (the Debian package `prometheus-node-exporter`)"),
    ):
        if shutil.which(binary) is None:
            _service_unavailable(what)
    tmp_path = tmp_path_factory.mktemp("grafana-promql")
    with django_db_blocker.unblock():
        try:
            yield from _stack(tmp_path)
        finally:
            from django.core.management import call_command

            call_command("flush", interactive=False, verbosity=0)


def _stack(tmp_path: Path) -> Iterator[Stack]:
    from django.contrib.auth.models import Group, User

    from etl_monitor.roles import roles_sync
    from etl_monitor.tokens import api_token_create
    from loaders.models import LoaderVersion, Team

    roles_sync()
    sales = Team.objects.create(slug="data-platform", name="Data Platform", email="dp@example.com")
    billing = Team.objects.create(slug="billing", name="Billing", email="billing@example.com")
    tokens = []
    for role in ("Editor", "Approver"):
        user = User.objects.create_user(username=f"grafana-{role.lower()}", is_staff=True)
        user.groups.set(Group.objects.filter(name=role))
        tokens.append(api_token_create(user=user, name="grafana proof")[1])  # what POST /api/v1/auth/token/ gives
    doubles: list[exporters._Served] = [exporters.KubeStateMetrics(), exporters.Cadvisor()]
    services = [exporters.MicrometerService(name) for name in exporters.SERVICES]
    for double in (*doubles, *services):
        double.start()
    node_proc, node = _node_exporter(tmp_path)
    prometheus = None
    try:
        with gunicorn_serving(tmp_path, {"WEB_THREADS": "1", "CELERY_TASK_ALWAYS_EAGER": "true"}) as base:
            data = day_of_data(base, tokens[0], tokens[1], {"sales": sales.slug, "billing": billing.slug})
            # The day is a day already lived: the loaders were approved before it (a slot from
            # before the approval is not the version's to miss, so SALES-HOURLY could not be missed).
            day_before = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
            LoaderVersion.objects.filter(state="ACTIVE").update(decided_at=day_before)
            app = base.split("://", 1)[1]
            prometheus = Prometheus(
                {
                    "etl-monitor": ([app], "/metrics"),
                    "kube-state-metrics": ([doubles[0].address], "/metrics"),
                    "kubelet-cadvisor": ([doubles[1].address], "/metrics/cadvisor"),
                    "services": ([s.address for s in services], "/actuator/prometheus"),
                    "node": ([node], "/metrics"),
                },
                labels={"environment": ENVIRONMENT},
                lookback="5m",
                rules=rules_every_second(),
            ).start()
            prometheus.wait_for("up", lambda result: len(result) == 8 and all(r["value"][1] == "1" for r in result))
            live_traffic(data, seconds=6)
            time.sleep(2.5)  # the last of it scraped
            yield Stack(prometheus, node, "SALES-HOURLY", sales.name)
    finally:
        if prometheus is not None:
            prometheus.stop()
        node_proc.terminate()
        node_proc.wait(timeout=10)
        for double in (*doubles, *services):
            double.stop()


def rules_every_second() -> str:
    """The shipped rules file with every group evaluated each second (they say 4m)."""
    rules = yaml.safe_load(RULES_FILE.read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    return yaml.safe_dump(rules, sort_keys=False)


def concrete(dashboard: dict[str, Any], stack: Stack) -> dict[str, str | list[str]]:
    """The dashboard's variables at one real value each, as a user who picks them gets them."""
    picks = {
        "environment": ENVIRONMENT,
        "team": stack.team,
        "loader": stack.loader,
        "service": "gateway",
        "namespace": exporters.NAMESPACE,
        "pod": exporters.PODS[2].name,  # the worker: 97 % of its memory limit
        "node": stack.node_exporter,
    }
    values = variable_defaults(dashboard)
    return {**values, **{k: v for k, v in picks.items() if k in values}}


def answer(stack: Stack, target: Target, values: dict[str, str | list[str]]) -> list[dict[str, Any]]:
    """Prometheus's answer to the target as Grafana sends it (instant, or a range over the data)."""
    expr = interpolate(target.target["expr"], values)
    assert "$" not in expr.replace('"$1"', ""), f"{target.name}: a variable left unexpanded in {expr}"
    url = stack.prometheus.url
    if target.target.get("instant"):
        reply = requests.post(f"{url}/api/v1/query", data={"query": expr}, timeout=10).json()
    else:
        end = time.time()
        params = {"query": expr, "start": end - 300, "end": end, "step": 1}
        reply = requests.post(f"{url}/api/v1/query_range", data=params, timeout=10).json()
    assert reply["status"] == "success", f"{target.name}: {reply.get('error')} in {expr}"
    return reply["data"]["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    """At least one number that is not NaN (histogram_quantile of no traffic is NaN: not data)."""
    values = [s["value"] for s in result if "value" in s] + [v for s in result for v in s.get("values", [])]
    return any(math.isfinite(float(v[1])) for v in values)


def test_every_promql_panel_answers_with_data_at_the_defaults_and_at_one_value_of_each_variable(stack) -> None:
    boards = dashboards()
    proven = targets(PROMETHEUS)
    assert {t.dashboard for t in proven} >= {
        "etl-transaction-monitoring",
        "infrastructure-health",
        "service-integration-health",
    }
    failures = []
    for target in proven:
        board = boards[target.dashboard]
        for label, values in (("defaults", variable_defaults(board)), ("concrete", concrete(board, stack))):
            result = answer(stack, target, values)
            if not has_data(result) and target.name not in EMPTY:
                failures.append(f"{target.name} ({label}): no data")
    assert not failures, "\n".join(failures)
    assert not set(EMPTY) - {t.name for t in proven}, "EMPTY names a target that no longer exists"


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def test_every_prometheus_variable_query_lists_values(stack) -> None:
    boards = dashboards()
    asked = variables(PROMETHEUS)
    assert len(asked) >= 9
    for variable in asked:
        query = interpolate(variable.query, variable_defaults(boards[variable.dashboard]))
        match = _LABEL_VALUES.match(query)
        assert match, f"{variable.name}: {query!r} is not label_values(...), which this test knows how to ask"
        params = {"match[]": match["selector"]} if match["selector"] else {}
        reply = requests.get(f"{stack.prometheus.url}/api/v1/label/{match['label']}/values", params=params, timeout=10)
        assert reply.json()["status"] == "success", f"{variable.name}: {reply.text}"
        assert reply.json()["data"], f"{variable.name}: {query} lists nothing"
    listed = {
        v.variable["name"]: requests.get(
            f"{stack.prometheus.url}/api/v1/label/{_LABEL_VALUES.match(v.query)['label']}/values", timeout=10
        ).json()["data"]
        for v in asked
        if v.dashboard == "etl-transaction-monitoring"
    }
    assert stack.team in listed["team"] and stack.loader in listed["loader"] and ENVIRONMENT in listed["environment"]


def test_the_service_map_gets_the_frames_the_node_graph_panel_needs(stack) -> None:
    (service_map,) = [t for t in targets(PROMETHEUS) if t.panel["type"] == "nodeGraph" and t.target["refId"] == "nodes"]
    board = dashboards()[service_map.dashboard]
    queries = {
        t.target["refId"]: t
        for t in targets(PROMETHEUS)
        if (t.dashboard, t.panel["id"]) == (service_map.dashboard, service_map.panel["id"])
    }
    assert set(queries) == {"nodes", "edges"}
    for query in queries.values():  # tables of one instant query each: a frame per refId
        assert query.target["format"] == "table" and query.target["instant"] is True
    values = variable_defaults(board)
    nodes = {s["metric"]["id"]: s for s in answer(stack, queries["nodes"], values)}
    edges = {s["metric"]["id"]: s for s in answer(stack, queries["edges"], values)}
    services = {caller for caller, *_ in exporters.CALLS} | {callee for _, callee, *_ in exporters.CALLS}
    assert set(nodes) == services
    assert all(s["metric"]["title"] == node for node, s in nodes.items())
    # Rates over 5 minutes of a few seconds' traffic are all scaled alike: compare their ratios.
    per_second = float(edges["gateway->auth"]["value"][1]) / 40
    assert float(nodes["postgresql"]["value"][1]) == pytest.approx(60 * per_second, rel=0.1)  # 25 + 30 + 5 calls/s
    assert float(nodes["auth"]["value"][1]) == pytest.approx(40 * per_second, rel=0.1)
    assert float(nodes["gateway"]["value"][1]) == 0  # a caller only: on the map, receiving nothing
    assert set(edges) == {f"{caller}->{callee}" for caller, callee, *_ in exporters.CALLS}
    for edge in edges.values():
        assert {edge["metric"]["source"], edge["metric"]["target"]} <= set(nodes)
    assert float(edges["loader->postgresql"]["value"][1]) == pytest.approx(30 * per_second, rel=0.1)
    # The panel's transformation names each frame's value column "mainstat", as the panel reads it.
    (organize,) = service_map.panel["transformations"]
    assert organize["options"]["renameByName"]["Value #nodes"] == "mainstat"
    assert organize["options"]["renameByName"]["Value #edges"] == "mainstat"


def test_the_circuit_breaker_panel_shows_each_breaker_in_its_state(stack) -> None:
    (breakers,) = [t for t in targets(PROMETHEUS) if t.panel["title"] == "Circuit breakers"]
    result = answer(stack, breakers, variable_defaults(dashboards()[breakers.dashboard]))
    shown = {(s["metric"]["service"], s["metric"]["name"]): float(s["value"][1]) for s in result}
    mapping = breakers.panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
    words = {key: option["text"] for key, option in mapping.items()}
    expected = {
        (service, name): state.upper() for service, names in exporters.BREAKERS.items() for name, state in names.items()
    }
    assert {key: words[str(int(value))] for key, value in shown.items()} == expected


def test_the_gauges_against_limits_count_each_pod_once(stack) -> None:
    board = dashboards()["infrastructure-health"]
    (memory,) = [t for t in targets(PROMETHEUS) if t.panel["title"] == "Memory against limit, per pod"]
    shown = {s["metric"]["pod"]: float(s["value"][1]) for s in answer(stack, memory, variable_defaults(board))}
    running = [p for p in exporters.PODS if p.running and p.namespace == exporters.NAMESPACE]
    # The container's share (98 %) of the pod's use: the pod cgroup and the pause container are left out.
    assert shown == pytest.approx({p.name: 100 * p.memory_used * 0.98 for p in running})
    steps = memory.panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [(s["color"], s["value"]) for s in steps] == [("green", None), ("orange", 80), ("red", 95)]


def test_the_app_reports_the_day_it_was_given(stack) -> None:
    # The success rate of SALES-HOURLY over the day: 2 failed and 1 timed out of its runs.
    query = 'loader_runs_24h{environment="test", loader_code="SALES-HOURLY", owner_team="Data Platform"}'
    runs = {s["metric"]["status"]: float(s["value"][1]) for s in stack.prometheus.query(query)}
    assert runs["FAILED"] == 2 and runs["TIMED_OUT"] == 1 and runs["SUCCEEDED"] > 10
    missed = stack.prometheus.query('loader_status{loader_code="SALES-HOURLY", status="missed"}')
    assert [s["value"][1] for s in missed] == ["1"]
    assert float(stack.prometheus.query('sum(incidents_open{environment="test"})')[0]["value"][1]) >= 1


def _panel_target(title_start: str, ref: str) -> Target:
    (found,) = [
        t
        for t in targets(PROMETHEUS)
        if t.dashboard == "etl-transaction-monitoring"
        and t.panel["title"].startswith(title_start)
        and t.target["refId"] == ref
    ]
    return found


def _evaluations(stack: Stack, record: str) -> list[float]:
    """The instants at which Prometheus evaluated the recording rule ``record`` in the last 15 s,
    the newest left out (a second to settle), newest first; at least six of them (the module's
    Prometheus may have started only seconds ago)."""
    deadline = time.monotonic() + 30
    while True:
        (series, *_) = stack.prometheus.query(f"{record}[15s]")
        instants = sorted((float(t) for t, _ in series["values"]), reverse=True)[1:]
        if len(instants) >= 6 or time.monotonic() > deadline:
            return instants
        time.sleep(1)


def _instant(stack: Stack, expr: str, at: float, label: str) -> dict[str, float]:
    return {
        s["metric"].get(label, ""): float(s["value"][1])
        for s in stack.prometheus.query(expr, at=at)
        if not math.isnan(float(s["value"][1]))
    }


def _same_as_raw(stack: Stack, record: str, shown: str, raw: str, label: str) -> list[dict[str, float]]:
    """The panel's query ``shown`` answers what ``raw`` (the same from the scraped series) answers
    at the rule's evaluation instants; the answers where they agree. A rule misses a scrape still
    being written at its instant (the raw query, later, sees it; on a loaded machine the app's
    scrape takes a good part of the second), so not every evaluation agrees; a wrong rule agrees
    exactly at none, so three with data must. (An instant where the raw query has no number is
    left out: seen once for the p99, NaN for a moment, not understood.)"""
    agreed, compared = [], []
    for at in _evaluations(stack, record):
        panel, expected = _instant(stack, shown, at, label), _instant(stack, raw, at, label)
        compared.append((at, panel, expected))
        same = panel.keys() == expected.keys() and all(
            panel[k] == pytest.approx(v, rel=1e-9) for k, v in expected.items()
        )
        if expected and same:
            agreed.append(panel)
    assert len(agreed) >= 3, f"{shown} against {raw}: {compared}"
    return agreed


def test_the_funnel_by_status_shows_the_raw_rates_of_the_selected_teams(stack) -> None:
    target = _panel_target("Signal ingestion funnel", "B")
    values = concrete(dashboards()[target.dashboard], stack)
    shown = interpolate(target.target["expr"], values)
    assert "team_status:signals_received:rate5m" in shown
    # The team's loaders only (BILLING-DAILY belongs to Billing), by validation status.
    raw = (
        'sum by (validation_status) (rate(signals_received_total{environment="test", loader_code="SALES-HOURLY"}[5m]))'
    )
    _same_as_raw(stack, "team_status:signals_received:rate5m", shown, raw, "validation_status")
    everyone = interpolate(target.target["expr"], variable_defaults(dashboards()[target.dashboard]))
    raw_all = 'sum by (validation_status) (rate(signals_received_total{environment="test"}[5m]))'
    _same_as_raw(stack, "team_status:signals_received:rate5m", everyone, raw_all, "validation_status")
    assert set(_instant(stack, everyone, time.time(), "validation_status")) == {"SUCCESS", "FAILED", "WARNING"}


def test_the_funnel_by_loader_shows_the_busiest_loaders_at_their_raw_rates(stack) -> None:
    target = _panel_target("Signal ingestion funnel", "A")
    assert "top 10" in target.panel["title"] and "10 busiest loaders" in target.panel["description"]
    shown = interpolate(target.target["expr"], variable_defaults(dashboards()[target.dashboard]))
    assert "topk(10," in shown
    raw = 'sum by (loader_code) (rate(signals_received_total{environment="test"}[5m]))'
    _same_as_raw(stack, "loader:signals_received:rate5m", shown, raw, "loader_code")
    # Both loaders of the day (fewer than 10) are shown over the whole range, as Grafana asks it.
    end = time.time()
    params = {"query": shown, "start": end - 300, "end": end, "step": 15}
    reply = requests.post(f"{stack.prometheus.url}/api/v1/query_range", data=params, timeout=10).json()
    assert {s["metric"]["loader_code"] for s in reply["data"]["result"]} == {"SALES-HOURLY", "BILLING-DAILY"}
    # The Loader variable narrows the top 10 to the picked loader.
    picked = interpolate(target.target["expr"], concrete(dashboards()[target.dashboard], stack))
    assert set(_instant(stack, picked, time.time(), "loader_code")) == {stack.loader}


def test_the_p99_heatmap_shows_the_raw_hourly_p99_of_each_loader(stack) -> None:
    target = _panel_target("p99 loader execution time", "A")
    assert target.target["interval"] == "1h"
    shown = interpolate(target.target["expr"], variable_defaults(dashboards()[target.dashboard]))
    raw = (
        "histogram_quantile(0.99, sum by (le, loader_code) "
        '(rate(loader_execution_seconds_bucket{environment="test"}[1h])))'
    )
    agreed = _same_as_raw(stack, "loader:loader_execution_seconds:p99_1h", shown, raw, "loader_code")
    # SALES-HOURLY's runs finished while Prometheus watched (9 minutes each): a p99 there.
    for p99 in agreed:
        assert 300 < p99[stack.loader] <= 600  # in the (300 s, 600 s] bucket
