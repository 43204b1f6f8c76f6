"""The state gauges are read once per scrape by the worker that answers: two gunicorn workers
do not double them (unlike counters, they are not added up across the workers' files)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from incidents.models import Incident
from tests.operations.conftest import make_run
from tests.signals_app.served import gunicorn_serving, http, worker_pids


def gauges(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        f.name: [(s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
        if f.name in ("incidents_open", "loader_status", "loader_runs_24h")
    }


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_incidents_open_loader_status_and_runs_24h_are_not_doubled_by_two_gunicorn_workers(
    require_postgres, active_loader, tmp_path
):
    now = timezone.now()
    Incident.objects.create(
        title="Run failed", severity="HIGH", category="TRANSACTION", loader=active_loader, subject="SALES-DAILY",
        fingerprint="gunicorn-1", first_seen=now, last_seen=now,
    )  # fmt: skip
    make_run(active_loader, started=now - dt.timedelta(hours=2))
    with gunicorn_serving(tmp_path, {"WEB_THREADS": "1", "CELERY_TASK_ALWAYS_EAGER": "true"}) as base:
        # Concurrent scrapes keep both workers busy, so each one answers some of them.
        with ThreadPoolExecutor(max_workers=8) as pool:
            texts = list(pool.map(lambda _: http(f"{base}/metrics")[1].decode(), range(30)))
        assert len(worker_pids(tmp_path)) >= 2, "every scrape reached one worker"
        for text in texts:
            found = gauges(text)
            open_high = [v for labels, v in found["incidents_open"] if labels == {"severity": "HIGH", "status": "OPEN"}]
            assert open_high == [1.0]
            assert sum(v for _, v in found["incidents_open"]) == 1
            sales = [
                (labels["status"], v) for labels, v in found["loader_status"] if labels["loader_code"] == "SALES-DAILY"
            ]
            assert len(sales) == 7  # one series per status, not one per worker
            assert sum(v for _, v in sales) == 1
            runs = [(labels, v) for labels, v in found["loader_runs_24h"] if labels["loader_code"] == "SALES-DAILY"]
            assert sorted(labels["status"] for labels, _ in runs) == ["FAILED", "SUCCEEDED", "TIMED_OUT"]
            assert {labels["owner_team"] for labels, _ in runs} == {"Data Platform"}
            assert [v for labels, v in runs if labels["status"] == "SUCCEEDED"] == [1.0]
