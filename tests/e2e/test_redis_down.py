"""Redis (broker and cache) stopped while jobs keep reporting: the database is the record, so
ingestion still answers 201 and stores everything; once Redis is back on the same port, detection
catches up and the incident opens within a bounded time, with nothing restarted."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform, wait_until

pytestmark = pytest.mark.services

# Redis back → the worker reconnects, beat's next detection tick (15 s) enqueues the rule (10 s
# interval here), the worker evaluates it: well within this.
CATCH_UP_SECONDS = 120


def test_ingestion_answers_while_redis_is_down_and_detection_catches_up_after(platform: Platform):
    code = platform.loader_create("E2E-REDIS")
    client = platform.ingest(platform.token_create(code))
    key = platform.token_create(code, kind="PING")
    run_id = str(uuid.uuid4())
    signals = [
        {"loader_code": code, "signal_key": "rows_loaded", "signal_value": 10, "validation_status": "SUCCESS"},
        {"loader_code": code, "signal_key": "row_check", "validation_status": "FAILED"},
    ]

    platform.redis_stop()
    try:
        sent = client.post(platform.url("/api/v1/signals/"), json=signals, timeout=HTTP_TIMEOUT)
        started = client.post(
            platform.url("/api/v1/runs/"), json={"loader_code": code, "run_id": run_id}, timeout=HTTP_TIMEOUT
        )
        failed = client.patch(
            platform.url(f"/api/v1/runs/{run_id}/"),
            json={"status": "FAILED", "error_text": "disk full"},
            timeout=HTTP_TIMEOUT,
        )
        pinged = requests.get(platform.url(f"/ping/{key}/{code}/3"), timeout=HTTP_TIMEOUT)

        assert (sent.status_code, started.status_code, failed.status_code, pinged.status_code) == (201, 201, 200, 200)
        assert sent.json() == {"accepted": 2}
        assert platform.get("Viewer", f"/api/v1/runs/{run_id}/").json()["status"] == "FAILED"
        stored = platform.get("Viewer", "/api/v1/signals/", params={"loader": code}).json()["results"]
        assert {"rows_loaded", "row_check"} <= {s["signal_key"] for s in stored}
    finally:
        platform.redis_start()

    [incident] = wait_until(
        lambda: platform.incidents(code), f"detection to open {code}'s incident once Redis is back", CATCH_UP_SECONDS
    )
    assert incident["status"] == "OPEN" and incident["severity"] == "HIGH"
    again = client.post(platform.url("/api/v1/signals/"), json=signals[:1], timeout=HTTP_TIMEOUT)
    assert again.status_code == 201
