"""Ingestion through real gunicorn workers while Redis (cache and broker) is unreachable: every
request answers 201, and the outage counters add up over the workers on /metrics. (How fast a
request answers meanwhile is measured in test_redis_down.py: here a worker still booting on a
busy machine would blur it.)"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from signals_app.models import Signal
from tests.net import free_port
from tests.signals_app.served import gunicorn_serving, http, worker_pids


def metric(text: str, prefix: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_gunicorn_workers_store_failed_signals_and_count_the_outage_while_redis_is_unreachable(
    require_postgres, active_loader, token_for, tmp_path
):
    token = token_for(active_loader)
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: cache and broker both away
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "WEB_THREADS": "2",
    }
    with gunicorn_serving(tmp_path, env) as base:
        payload = json.dumps({"loader_code": "SALES-DAILY", "signal_key": "check", "validation_status": "FAILED"})
        with ThreadPoolExecutor(max_workers=6) as pool:
            answers = list(
                pool.map(lambda _: http(f"{base}/api/v1/signals/", body=payload.encode(), token=token), range(30))
            )
        assert [status for status, _body, _took in answers] == [201] * 30
        assert Signal.objects.filter(validation_status="FAILED").count() == 30

        text = http(f"{base}/metrics")[1].decode()
        assert metric(text, "ingest_rate_limit_unavailable_total") == 30
        assert metric(text, 'broker_publish_failed_total{task="incidents.tasks.rules_evaluate_for_loader"}') == 30
        pids = worker_pids(tmp_path)
        assert len(pids) >= 2, f"requests reached only {pids}"
