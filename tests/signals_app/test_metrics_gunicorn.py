"""/metrics adds up every gunicorn worker's counters (prometheus_client multiprocess mode)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.signals_app.served import gunicorn_serving, http, worker_pids

LINE = 'signals_received_total{loader_code="SALES-DAILY",validation_status="FAILED"}'


def total(text: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(LINE))


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_metrics_are_correct_with_two_gunicorn_workers(require_postgres, active_loader, token_for, tmp_path):
    token = token_for(active_loader)
    # No worker runs here: the detection fast path runs inside the request instead of
    # leaving tasks in the shared broker for later tests.
    with gunicorn_serving(tmp_path, {"WEB_THREADS": "1", "CELERY_TASK_ALWAYS_EAGER": "true"}) as base:
        payload = json.dumps([{"loader_code": "SALES-DAILY", "signal_key": "check", "validation_status": "FAILED"}] * 2)
        # Concurrent requests keep both workers busy, so each one counts some of them.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda _: http(f"{base}/api/v1/signals/", body=payload.encode(), token=token)[0], range(30))
            )
        assert statuses == [201] * 30
        pids = worker_pids(tmp_path)
        assert len(pids) >= 2, f"requests reached only {pids}"
        for _ in range(6):  # whichever worker answers the scrape, the total is the same
            assert total(http(f"{base}/metrics")[1].decode()) == 60
