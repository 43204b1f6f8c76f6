"""The dependency-free Python client against a live server (and a flaky one)."""

from __future__ import annotations

import time

import pytest
from pytest_httpserver import HTTPServer

from signals_app.client import Monitor
from signals_app.models import Run, Signal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def monitor(live_server, active_loader, token_for) -> Monitor:
    return Monitor(live_server.url, token_for(active_loader), timeout=5, retries=1, backoff=0.05)


def test_a_successful_run_is_recorded_with_its_signals(monitor):
    with monitor.run("SALES-DAILY", correlation_id="batch-7") as run:
        assert run.signal("rows_loaded", 480, metric_type="ROW_COUNT")
        run.rows(read=500, written=480, rejected=20)
    stored = Run.objects.get(run_id=run.run_id)
    assert (stored.status, stored.rows_written, stored.correlation_id) == ("SUCCEEDED", 480, "batch-7")
    keys = set(Signal.objects.filter(run=stored).values_list("signal_key", flat=True))
    assert {"rows_loaded", "run_status", "run_duration_seconds", "rows_written"} <= keys


def test_a_failing_job_is_recorded_failed_and_its_error_reraised(monitor):
    with pytest.raises(ZeroDivisionError), monitor.run("SALES-DAILY") as run:
        1 / 0  # noqa: B018
    stored = Run.objects.get(run_id=run.run_id)
    assert stored.status == "FAILED" and "ZeroDivisionError" in stored.error_text


def test_a_platform_that_is_down_never_breaks_the_job():
    monitor = Monitor("http://127.0.0.1:9", "etlm_x", timeout=0.5, retries=1, backoff=0.01)
    started = time.monotonic()
    with monitor.run("SALES-DAILY") as run:
        assert run.signal("rows", 1) is False
        result = "job done"
    assert result == "job done" and time.monotonic() - started < 10


def test_it_retries_server_errors_and_honours_retry_after(httpserver: HTTPServer):
    httpserver.expect_ordered_request("/api/v1/signals/", method="POST").respond_with_data(
        "busy", status=429, headers={"Retry-After": "1"}
    )
    httpserver.expect_ordered_request("/api/v1/signals/", method="POST").respond_with_data("oops", status=503)
    httpserver.expect_ordered_request("/api/v1/signals/", method="POST").respond_with_json({"accepted": 1}, status=201)
    monitor = Monitor(httpserver.url_for("/").rstrip("/"), "etlm_x", retries=3, backoff=0.01)
    started = time.monotonic()
    assert monitor.signal("SALES-DAILY", "rows", 5) is True
    assert time.monotonic() - started >= 1.0  # waited as Retry-After asked
    bodies = [r.get_json() for r, _ in httpserver.log]
    assert len(bodies) == 3 and len({b["idempotency_key"] for b in bodies}) == 1  # same key on every retry
    assert httpserver.log[0][0].headers["Authorization"] == "Bearer etlm_x"


def test_a_refusal_is_not_retried(httpserver: HTTPServer):
    httpserver.expect_request("/api/v1/signals/", method="POST").respond_with_json({"loader_code": ["Unknown"]}, 400)
    monitor = Monitor(httpserver.url_for("/").rstrip("/"), "etlm_x", retries=3, backoff=0.01)
    assert monitor.signal("NOPE", "rows", 5) is False
    assert len(httpserver.log) == 1
