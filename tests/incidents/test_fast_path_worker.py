"""The event-driven path with a real Celery worker on Redis: a FAILED run becomes an incident in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from etl_monitor.celery import app
from incidents.models import Incident
from signals_app import tokens as ingest
from tests.processes import celery_worker, postgres_test_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_failed_run_opens_an_incident_through_a_real_worker(
    require_postgres, require_redis, active_loader, editor, monkeypatch
):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    from tests.platform.test_celery_worker import purge_broker

    purge_broker()
    from incidents.models import DetectionRule

    # Its own rule: an earlier transactional test may have flushed the seeded ones.
    DetectionRule.objects.update_or_create(
        name="Run failed", defaults={"kind": "run_failed", "threshold": 0.0, "window_seconds": 900, "enabled": True}
    )
    env = {
        **os.environ,
        "DATABASE_URL": postgres_test_url(),
    }
    worker = subprocess.Popen(
        celery_worker("--loglevel", "WARNING"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _token, raw = ingest.ingest_token_create(user=editor, loader=active_loader, name="job")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        run_id = client.post(
            "/api/v1/runs/", json.dumps({"loader_code": "SALES-DAILY"}), content_type="application/json"
        ).json()["run_id"]
        sent = time.monotonic()
        response = client.patch(
            f"/api/v1/runs/{run_id}/",
            json.dumps({"status": "FAILED", "error_text": "boom"}),
            content_type="application/json",
        )
        assert response.status_code == 200
        deadline = sent + 60  # generous for a cold worker; the benchmark measures the real latency
        while time.monotonic() < deadline and not Incident.objects.filter(rule__name="Run failed").exists():
            time.sleep(0.1)
        incident = Incident.objects.filter(rule__name="Run failed").first()
        assert incident is not None, "no incident from the worker"
        assert incident.loader == active_loader
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=20)
