"""Anomaly rules against the running platform (gunicorn, worker and beat on PostgreSQL and Redis):
a loader with ten days of hourly runs in the database, an anomaly rule created over the API, and a
job that reports one run writing far fewer rows than usual — the worker opens the incident with
its evidence, and the incident page draws the expected band for a Viewer."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from typing import Any

import pytest

from tests.e2e.harness import HTTP_TIMEOUT, Platform, wait_until

pytestmark = pytest.mark.services
CODE = "E2E-ANOMALY"


def _history(platform: Platform, code: str, days: int) -> None:
    """``days`` of hourly runs that write a daily pattern of rows, as the job would have reported."""
    import psycopg

    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    with psycopg.connect(**{**platform.admin_database, "dbname": platform.database}) as conn:
        [loader_id] = conn.execute("SELECT id FROM loaders_loader WHERE loader_code = %s", [code]).fetchone()
        rows = []
        for hour in range(days * 24, 0, -1):
            started = now - dt.timedelta(hours=hour)
            written = round(10_000 + 4_000 * math.sin(2 * math.pi * (started.hour - 6) / 24) + (hour * 37) % 200)
            finished = started + dt.timedelta(minutes=3)
            rows.append((uuid.uuid4(), loader_id, started, finished, 180.0, written, finished, finished))
        conn.cursor().executemany(
            "INSERT INTO signals_app_run (run_id, loader_id, status, started_at, finished_at, duration_seconds,"
            " rows_written, error_text, log_excerpt, correlation_id, source, loader_paused, no_active_version,"
            " created_at, updated_at)"
            " VALUES (%s, %s, 'SUCCEEDED', %s, %s, %s, %s, '', '', '', 'API', false, false, %s, %s)",
            rows,
        )


@pytest.fixture(scope="module")
def anomaly_rule(platform: Platform) -> dict[str, Any]:
    platform.loader_create(CODE, schedule_cron="0 * * * *", schedule_timezone="UTC")
    _history(platform, CODE, days=10)
    answer = platform.post(
        "Admin",
        "/api/v1/rules/",
        {
            "name": "E2E unusual rows",
            "kind": "anomaly",
            "params": {"source": "rows_written", "sensitivity": "medium", "missing_after": 0},
            "scope": "LOADERS",
            "scope_loaders": [CODE],
            "interval_seconds": 10,
            "severity": "HIGH",
            "message": "{subject}: {series} {headline}",
        },
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def incident(platform: Platform, anomaly_rule: dict[str, Any]) -> dict[str, Any]:
    """The rule learns the loader's history (no incident for a normal series); then the job reports
    one run writing 12 rows, and the worker opens the incident."""
    evaluated = wait_until(
        lambda: platform.get("Viewer", f"/api/v1/rules/{anomaly_rule['id']}/").json()["last_evaluated_at"],
        "the anomaly rule's first evaluation",
        timeout=60,
    )
    assert evaluated and platform.incidents(CODE, rule="E2E unusual rows") == []

    client = platform.ingest(platform.token_create(CODE))
    run_id = str(uuid.uuid4())
    started = client.post(platform.url("/api/v1/runs/"), json={"loader_code": CODE, "run_id": run_id}, timeout=30)
    finished = client.patch(
        platform.url(f"/api/v1/runs/{run_id}/"), json={"status": "SUCCEEDED", "rows_written": 12}, timeout=30
    )
    assert (started.status_code, finished.status_code) == (201, 200), finished.text
    [opened] = wait_until(lambda: platform.incidents(CODE, rule="E2E unusual rows"), "the anomaly incident", timeout=90)
    return opened


def test_a_run_far_below_its_history_opens_an_incident_with_its_evidence(
    platform: Platform, anomaly_rule: dict[str, Any], incident: dict[str, Any]
):
    evidence = incident["metrics"]
    assert evidence["kind"] == "anomaly" and evidence["observed"] == 12
    assert evidence["expected_low"] > 12 and evidence["learning"] is False
    assert evidence["seasonality"] in ("none", "daily", "weekly") and evidence["score"] >= 0.75
    assert incident["title"].startswith(f"{CODE}: rows written 12, expected ")

    viewer = platform.admin_sessions["Viewer"]
    page = viewer.get(platform.url(f"/admin/incidents/incident/{incident['id']}/change/"), timeout=HTTP_TIMEOUT)
    assert page.status_code == 200 and "Evidence" in page.text
    band = viewer.get(platform.url(f"/admin/incidents/incident/{incident['id']}/band/"), timeout=HTTP_TIMEOUT)
    assert band.status_code == 200, band.text
    assert band.json()["value"][-1] == 12, "the band ends with the anomalous run"

    loader_page = viewer.get(platform.url(f"/admin/ops/loaders/{CODE}/"), timeout=HTTP_TIMEOUT)
    assert loader_page.status_code == 200 and "E2E unusual rows" in loader_page.text
    series = viewer.get(
        platform.url(f"/admin/ops/loaders/{CODE}/anomaly/{anomaly_rule['id']}.json"),
        params={"subject": CODE},
        timeout=HTTP_TIMEOUT,
    )
    assert series.status_code == 200, series.text
    assert series.json()["status"] == "anomalous" and series.json()["value"][-1] == 12


def test_a_viewer_backtests_the_rule_on_the_worker(
    platform: Platform, anomaly_rule: dict[str, Any], incident: dict[str, Any]
):
    """Ten days at a 10-second interval is too big for a request (3,000 evaluations): the API
    queues a job, the real worker runs it, and the result lists the drop the engine opened."""
    answer = platform.post("Viewer", f"/api/v1/rules/{anomaly_rule['id']}/backtest/", {"days": 11})
    assert answer.status_code == 202, answer.text
    assert answer.headers["Location"] == answer.json()["url"]
    viewer = platform.api("Viewer")

    def done() -> dict[str, Any] | None:
        job = viewer.get(answer.headers["Location"], timeout=HTTP_TIMEOUT).json()
        assert job["status"] != "FAILED", job["error"]
        return job if job["status"] == "DONE" else None

    job = wait_until(done, "the backtest job", timeout=120)
    result = job["result"]
    assert result["step_seconds"] > 10 and result["errors"] == [], "10-second ticks over 11 days are stretched"
    assert [(i["subject"], i["end"]) for i in result["incidents"]] == [(CODE, None)], result["incidents"]
    assert result["incidents"][0]["peak"] == 12
    other = platform.get("Operator", f"/api/v1/backtests/{job['id']}/")
    assert other.status_code == 404, "another user's job is not theirs to read"
