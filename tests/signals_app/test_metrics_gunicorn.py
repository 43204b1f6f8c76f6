"""/metrics adds up every gunicorn worker's counters (prometheus_client multiprocess mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.net import free_port
from tests.processes import process_stop

ROOT = Path(__file__).resolve().parents[2]
LINE = 'signals_received_total{loader_code="SALES-DAILY",validation_status="FAILED"}'


def http(url: str, *, body: bytes | None = None, token: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("Connection", "close")  # a new connection each time spreads requests over workers
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


def total(text: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(LINE))


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_metrics_are_correct_with_two_gunicorn_workers(require_postgres, active_loader, token_for, tmp_path):
    token = token_for(active_loader)
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "ETL_MONITOR_VAR_DIR": str(tmp_path / "var"),
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "1",
        # No worker runs here: the detection fast path runs inside the request instead of
        # leaving tasks in the shared broker for later tests.
        "CELERY_TASK_ALWAYS_EAGER": "true",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [gunicorn, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if http(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        payload = json.dumps([{"loader_code": "SALES-DAILY", "signal_key": "check", "validation_status": "FAILED"}] * 2)
        from concurrent.futures import ThreadPoolExecutor

        # Concurrent requests keep both workers busy, so each one counts some of them.
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda _: http(f"{base}/api/v1/signals/", body=payload.encode(), token=token)[0], range(30))
            )
        assert statuses == [201] * 30
        pids = {p.name.split("_")[-1] for p in (tmp_path / "prom").glob("counter_*.db")}
        assert len(pids) >= 2, f"requests reached only {pids}"
        for _ in range(6):  # whichever worker answers the scrape, the total is the same
            assert total(http(f"{base}/metrics")[1].decode()) == 60
    finally:
        process_stop(proc)
