"""A backtest too big for the request, run by a real Celery worker process as in production: the
API answers 202 at once, the worker runs the job, and polling its URL gives the inline result."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from etl_monitor.celery import app
from incidents.backtest import rule_backtest
from incidents.models import BacktestJob
from tests.incidents.test_backtest import add_lag_signals
from tests.platform.test_celery_worker import purge_broker
from tests.processes import celery_worker, postgres_test_url, process_start, process_stop


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_big_backtest_is_run_by_a_real_worker(
    require_postgres, viewer, active_loader, rule_factory, monkeypatch, settings, tmp_path
):
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    settings.BACKTEST_INLINE_MAX = 1
    add_lag_signals(active_loader, 1, end=timezone.now() - dt.timedelta(seconds=150))
    rule = rule_factory(
        "metric_threshold", params={"signal_key": "lag"}, threshold=10, window_seconds=3600, interval_seconds=3600
    )
    purge_broker()
    worker = process_start(
        celery_worker(), env={**os.environ, "DATABASE_URL": postgres_test_url()}, log=tmp_path / "worker.log"
    )
    client = APIClient()
    client.force_authenticate(viewer)
    try:
        response = client.post(f"/api/v1/rules/{rule.pk}/backtest/", {"days": 2}, format="json")  # committed
        assert response.status_code == 202, response.json()
        deadline = time.monotonic() + 60  # generous for a cold worker
        body = client.get(response["Location"]).json()
        while time.monotonic() < deadline and body["status"] in ("QUEUED", "RUNNING"):
            time.sleep(0.2)
            body = client.get(response["Location"]).json()
    finally:
        process_stop(worker)

    assert body["status"] == "DONE", (body, (tmp_path / "worker.log").read_text()[-3000:])
    inline = rule_backtest(rule=rule, days=2, now=BacktestJob.objects.get().created_at).as_dict()
    assert body["result"]["incidents"] and body["result"]["incidents"] == inline["incidents"]
