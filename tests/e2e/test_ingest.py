"""Signals and runs sent by a job through the ingest API of the running platform, read back by a
Viewer: what was accepted is stored, what was refused left nothing behind."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.harness import HTTP_TIMEOUT, Platform

pytestmark = pytest.mark.services
_codes = itertools.count(1)


@pytest.fixture
def job(platform: Platform) -> tuple[str, requests.Session]:
    """A loader and its job's client (the loader's ingest token as the bearer)."""
    code = platform.loader_create(f"E2E-INGEST-{next(_codes)}")
    return code, platform.ingest(platform.token_create(code))


def signals_of(platform: Platform, **params: str) -> list[dict[str, Any]]:
    answer = platform.get("Viewer", "/api/v1/signals/", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


def test_one_signal_and_a_batch_are_stored_and_listed(platform: Platform, job: tuple[str, requests.Session]):
    code, client = job
    one = {"loader_code": code, "signal_key": "rows_loaded", "signal_value": 1234, "validation_status": "SUCCESS"}
    batch = [{**one, "signal_key": f"check_{n}", "validation_status": "WARNING"} for n in range(3)]

    single = client.post(platform.url("/api/v1/signals/"), json=one, timeout=HTTP_TIMEOUT)
    many = client.post(platform.url("/api/v1/signals/"), json=batch, timeout=HTTP_TIMEOUT)

    assert (single.status_code, single.json()) == (201, {"accepted": 1})
    assert (many.status_code, many.json()) == (201, {"accepted": 3})
    stored = signals_of(platform, loader=code)
    assert sorted(s["signal_key"] for s in stored) == ["check_0", "check_1", "check_2", "rows_loaded"]
    assert {s["loader_code"] for s in stored} == {code}


def test_a_batch_with_one_bad_signal_is_refused_whole_naming_the_field(
    platform: Platform, job: tuple[str, requests.Session]
):
    code, client = job
    good = {"loader_code": code, "signal_key": "ok", "validation_status": "SUCCESS"}
    bad = {**good, "signal_key": "bad", "validation_status": "MAYBE"}

    answer = client.post(platform.url("/api/v1/signals/"), json=[good, bad], timeout=HTTP_TIMEOUT)

    assert answer.status_code == 400
    assert "validation_status" in answer.text
    assert signals_of(platform, loader=code) == []


def test_a_run_started_and_finished_is_read_back_with_its_standard_signals(
    platform: Platform, job: tuple[str, requests.Session]
):
    code, client = job
    run_id = str(uuid.uuid4())
    start = {"loader_code": code, "run_id": run_id, "correlation_id": "e2e-run"}

    started = client.post(platform.url("/api/v1/runs/"), json=start, timeout=HTTP_TIMEOUT)
    retried = client.post(platform.url("/api/v1/runs/"), json=start, timeout=HTTP_TIMEOUT)
    finished = client.patch(
        platform.url(f"/api/v1/runs/{run_id}/"),
        json={"status": "SUCCEEDED", "rows_read": 500, "rows_written": 480, "rows_rejected": 20},
        timeout=HTTP_TIMEOUT,
    )

    assert (started.status_code, retried.status_code, finished.status_code) == (201, 200, 200)
    run = platform.get("Viewer", f"/api/v1/runs/{run_id}/").json()
    assert run["status"] == "SUCCEEDED" and run["rows_written"] == 480 and run["finished_at"]
    assert run["correlation_id"] == "e2e-run" and run["source"] != "PING"
    assert signals_of(platform, run_id=run_id), "finishing a run records its standard signals"


def test_a_token_of_one_loader_cannot_write_for_another(platform: Platform, job: tuple[str, requests.Session]):
    _code, client = job
    other = platform.loader_create(f"E2E-INGEST-{next(_codes)}")
    signal = {"loader_code": other, "signal_key": "x", "validation_status": "FAILED"}

    answer = client.post(platform.url("/api/v1/signals/"), json=signal, timeout=HTTP_TIMEOUT)
    run = client.post(platform.url("/api/v1/runs/"), json={"loader_code": other}, timeout=HTTP_TIMEOUT)

    assert answer.status_code in (400, 403) and run.status_code in (400, 403)
    assert signals_of(platform, loader=other) == []
