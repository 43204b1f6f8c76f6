"""Ingestion through real gunicorn workers while Redis (cache and broker) is unreachable: every
request answers 201 quickly, and the outage counters add up over the workers on /metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings

from signals_app.models import Signal
from tests.net import free_port
from tests.processes import process_stop

ROOT = Path(__file__).resolve().parents[2]


def http(url: str, *, body: bytes | None = None, token: str = "") -> tuple[int, bytes, float]:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    request.add_header("Connection", "close")  # a new connection each time spreads requests over workers
    if body is not None:
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", f"Bearer {token}")
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read(), time.monotonic() - started


def metric(text: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_store_failed_signals_and_count_the_outage_while_redis_is_unreachable(
    require_postgres, active_loader, token_for, tmp_path
):
    token = token_for(active_loader)
    db = settings.DATABASES["default"]
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: cache and broker both away
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "ETL_MONITOR_VAR_DIR": str(tmp_path / "var"),
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "2",
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    proc = subprocess.Popen(
        [gunicorn, "etl_monitor.wsgi", "-c", "deploy/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if http(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        payload = json.dumps({"loader_code": "SALES-DAILY", "signal_key": "check", "validation_status": "FAILED"})
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(
                pool.map(lambda _: http(f"{base}/api/v1/signals/", body=payload.encode(), token=token), range(30))
            )
        assert [status for status, _body, _took in answers] == [201] * 30
        assert max(took for _status, _body, took in answers) < 3, sorted(took for *_, took in answers)[-3:]
        assert Signal.objects.filter(validation_status="FAILED").count() == 30

        text = http(f"{base}/metrics")[1].decode()
        assert metric(text, "ingest_rate_limit_unavailable_total") == 30
        assert metric(text, 'broker_publish_failed_total{task="incidents.tasks.rules_evaluate_for_loader"}') == 30
        pids = {p.name.split("_")[-1] for p in (tmp_path / "prom").glob("counter_*.db")}
        assert len(pids) >= 2, f"requests reached only {pids}"
    finally:
        process_stop(proc)
