"""The state gauges of /metrics (operations/metrics.py): each loader status, incidents open by
severity and status, finished runs of the last 24 h, what a HIDDEN field keeps out, and a query
count that does not grow with the fleet."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from etl_monitor.models import FieldProtection
from incidents.models import Incident, IncidentStatus
from loaders.models import Team
from operations.metrics import StateCollector
from operations.selectors import Health
from signals_app.metrics import exposition
from signals_app.models import RunStatus
from tests.operations.conftest import NOW, make_run
from tests.operations.test_overview_page import _bulk_loaders


def samples(collector: StateCollector | None = None) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """metric name → {sorted labels: value}, from one collection (the fixed-NOW collector by default)."""
    result: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in (collector or StateCollector(clock=lambda: NOW)).collect():
        for sample in family.samples:
            result.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return result


def status_of(gauges, code: str) -> list[str]:
    return [
        dict(labels)["status"]
        for labels, v in gauges["loader_status"].items()
        if dict(labels)["loader_code"] == code and v == 1
    ]


def incident(loader, severity: str, status: str = IncidentStatus.OPEN, n: int = 0) -> Incident:
    return Incident.objects.create(
        title="x", severity=severity, category="TRANSACTION", loader=loader, subject=loader.loader_code,
        fingerprint=f"{loader.pk}-{severity}-{status}-{n}", first_seen=NOW, last_seen=NOW, status=status,
    )  # fmt: skip


def test_each_loader_has_its_overview_status_as_1_and_every_other_status_as_0(make_loader) -> None:
    make_run(make_loader("S-OK"), started=NOW.replace(minute=0, second=5))
    make_run(make_loader("S-RUNNING"), RunStatus.RUNNING, started=NOW - dt.timedelta(minutes=3))
    make_run(make_loader("S-FAILED"), RunStatus.FAILED, started=NOW - dt.timedelta(minutes=30))
    make_run(make_loader("S-MISSED", grace=20), started=NOW - dt.timedelta(hours=2))  # 11:00 + 20 min passed
    # Due 11:50, 30 min grace: not started yet, still within its grace.
    make_run(make_loader("S-LATE", cron="50 * * * *", grace=30), started=NOW - dt.timedelta(minutes=70))
    make_loader("S-PAUSED", paused=True)
    make_loader("S-NONE", active=False)
    gauges = samples()
    for code, health in [("S-OK", Health.OK), ("S-RUNNING", Health.RUNNING), ("S-FAILED", Health.FAILED),
                         ("S-MISSED", Health.MISSED), ("S-LATE", Health.LATE), ("S-PAUSED", Health.PAUSED),
                         ("S-NONE", Health.NONE)]:  # fmt: skip
        assert status_of(gauges, code) == [health.value], code
    assert len(gauges["loader_status"]) == 7 * len(Health)
    assert gauges["loader_status"][(("loader_code", "S-OK"), ("owner_team", "Ops Data"), ("status", "failed"))] == 0
    assert {dict(k)["status"]: v for k, v in gauges["loaders_by_status"].items()} == dict.fromkeys(Health.values, 1)


def test_incidents_open_counts_open_and_acknowledged_by_severity_and_leaves_the_rest_out(make_loader) -> None:
    loader = make_loader("INC-1")
    incident(loader, "HIGH", n=1)
    incident(loader, "HIGH", n=2)
    incident(loader, "LOW", IncidentStatus.ACKNOWLEDGED)
    incident(loader, "CRITICAL", IncidentStatus.RESOLVED)
    incident(loader, "CRITICAL", IncidentStatus.CLOSED)
    gauges = {tuple(v for _, v in k): n for k, n in samples()["incidents_open"].items()}
    assert gauges[("HIGH", "OPEN")] == 2
    assert gauges[("LOW", "ACKNOWLEDGED")] == 1
    assert gauges[("CRITICAL", "OPEN")] == 0 and gauges[("CRITICAL", "ACKNOWLEDGED")] == 0
    assert len(gauges) == 4 * 2  # every severity × OPEN/ACKNOWLEDGED, zeros included
    assert sum(gauges.values()) == 3


def test_runs_24h_counts_finished_runs_started_in_the_last_day_by_loader_team_and_result(make_loader) -> None:
    loader = make_loader("RUNS-1")
    make_loader("RUNS-IDLE", team=Team.objects.create(slug="billing", name="Billing"))  # no run: its series are 0
    for minutes in (10, 70, 130):
        make_run(loader, started=NOW - dt.timedelta(minutes=minutes))
    make_run(loader, RunStatus.FAILED, started=NOW - dt.timedelta(hours=5))
    make_run(loader, RunStatus.TIMED_OUT, started=NOW - dt.timedelta(hours=6))
    make_run(loader, RunStatus.RUNNING, started=NOW - dt.timedelta(minutes=2))  # not finished: not counted
    make_run(loader, started=NOW - dt.timedelta(hours=25))  # older than a day: not counted
    gauges = {tuple(v for _, v in k): n for k, n in samples()["loader_runs_24h"].items()}
    assert gauges == {
        ("RUNS-1", "Ops Data", "SUCCEEDED"): 3, ("RUNS-1", "Ops Data", "FAILED"): 1,
        ("RUNS-1", "Ops Data", "TIMED_OUT"): 1,
        ("RUNS-IDLE", "Billing", "SUCCEEDED"): 0, ("RUNS-IDLE", "Billing", "FAILED"): 0,
        ("RUNS-IDLE", "Billing", "TIMED_OUT"): 0,
    }  # fmt: skip


def test_a_hidden_owner_leaves_the_team_blank_and_no_loader_name_is_ever_a_label(make_loader) -> None:
    make_loader("SECRETIVE-1")
    FieldProtection.objects.create(model_label="loaders.loader", field_name="owner", level="HIDDEN")
    text = exposition()[0].decode()
    assert 'loader_status{loader_code="SECRETIVE-1",owner_team="",status="ok"}' in text
    assert 'loader_runs_24h{loader_code="SECRETIVE-1",owner_team="",status="FAILED"}' in text
    assert "Ops Data" not in text and "ops-data" not in text
    assert "SECRETIVE-1 job" not in text  # the name


def test_scrape_serves_the_state_gauges_with_the_counters(make_loader) -> None:
    make_loader("SCRAPED-1", paused=True)
    families = {f.name: f for f in text_string_to_metric_families(exposition()[0].decode())}
    assert {"loader_status", "loaders_by_status", "incidents_open", "loader_runs_24h", "loader_runs_finished"} <= set(
        families
    )
    paused = [s for s in families["loaders_by_status"].samples if s.labels["status"] == "paused"]
    assert [s.value for s in paused] == [1]
    assert [s.value for s in families["metrics_state_up"].samples] == [1]


def test_the_state_gauges_cost_the_same_queries_for_10_and_50_loaders(ops_team) -> None:
    now = timezone.now()
    collector = StateCollector()
    samples(collector)  # protection rules cached, like a running server's
    _bulk_loaders(ops_team, 0, 10, now)
    with CaptureQueriesContext(connection) as ten:
        assert len(samples(collector)["loaders_by_status"]) == len(Health)
    _bulk_loaders(ops_team, 10, 40, now)
    with CaptureQueriesContext(connection) as fifty:
        gauges = samples(collector)
    assert sum(gauges["loaders_by_status"].values()) == 50
    assert len(fifty.captured_queries) == len(ten.captured_queries) <= 10


class Rollback(Exception):
    pass


def test_a_database_error_keeps_the_counters_and_says_the_state_is_missing(make_loader) -> None:
    make_loader("GONE-1")
    with pytest.raises(Rollback), transaction.atomic():  # the table is back after the rollback
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE signals_app_run RENAME TO signals_app_run_away")
        text = exposition()[0].decode()
        raise Rollback
    assert "metrics_state_up 0.0" in text
    assert "loader_status{" not in text
    assert "loader_execution_seconds" in text
