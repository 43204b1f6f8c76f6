"""Runs (start/finish, standard signals), cron pings, token management, /metrics."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import Client
from rest_framework.test import APIClient

from signals_app.models import IngestToken, Run, RunStatus, Signal


def send(client, method: str, url: str, payload) -> object:
    return getattr(client, method)(url, json.dumps(payload), content_type="application/json")


def test_a_run_starts_and_finishes_with_its_standard_signals(job, active_loader):
    run_id = str(uuid.uuid4())
    started = send(
        job,
        "post",
        "/api/v1/runs/",
        {"loader_code": "SALES-DAILY", "run_id": run_id, "started_at": "2026-11-28T02:30:00Z", "correlation_id": "c-9"},
    )
    assert started.status_code == 201, started.content
    assert started.json()["loader_version"] == 1
    again = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY", "run_id": run_id})
    assert again.status_code == 200  # a retried start changes nothing
    finished = send(
        job,
        "patch",
        f"/api/v1/runs/{run_id}/",
        {
            "status": "SUCCEEDED",
            "finished_at": "2026-11-28T02:40:30Z",
            "rows_read": 500,
            "rows_written": 480,
            "rows_rejected": 20,
        },
    )
    assert finished.status_code == 200, finished.content
    assert finished.json()["duration_seconds"] == 630.0
    signals = {s.signal_key: s for s in Signal.objects.filter(run__run_id=run_id)}
    assert set(signals) == {"run_status", "run_duration_seconds", "rows_read", "rows_written", "rows_rejected"}
    assert signals["rows_written"].value_number == 480 and signals["run_status"].validation_status == "SUCCESS"
    retry = send(job, "patch", f"/api/v1/runs/{run_id}/", {"status": "SUCCEEDED"})
    assert retry.status_code == 200
    assert Signal.objects.filter(run__run_id=run_id).count() == 5
    conflict = send(job, "patch", f"/api/v1/runs/{run_id}/", {"status": "FAILED"})
    assert conflict.status_code == 409


def test_overlapping_runs_are_normal(job):
    a = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    b = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    assert a != b and Run.objects.filter(status=RunStatus.RUNNING).count() == 2


def test_a_failed_run_keeps_a_bounded_error(job):
    run_id = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    response = send(job, "patch", f"/api/v1/runs/{run_id}/", {"status": "FAILED", "error_text": "x" * 10_000})
    assert response.status_code == 200
    run = Run.objects.get()
    assert len(run.error_text) <= 4000 and run.error_text.endswith("(truncated)")
    assert Signal.objects.get(signal_key="run_status").validation_status == "FAILED"


def test_run_validation_names_the_field(job):
    response = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY", "run_id": "not-a-uuid"})
    assert response.status_code == 400 and "run_id" in response.json()
    run_id = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    response = send(job, "patch", f"/api/v1/runs/{run_id}/", {"status": "DONE", "rows_read": -1})
    assert set(response.json()) == {"status", "rows_read"}


def test_a_token_cannot_touch_another_loaders_run(job, new_loader, token_for):
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(new_loader('OTHER'))}")
    run_id = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    assert send(other, "patch", f"/api/v1/runs/{run_id}/", {"status": "FAILED"}).status_code == 404
    assert other.get(f"/api/v1/runs/{run_id}/").status_code == 404


def test_cron_pings_start_succeed_fail_and_keep_the_body(active_loader, token_for):
    key = token_for(active_loader, IngestToken.Kind.PING)
    client = Client()
    assert client.get(f"/ping/{key}/SALES-DAILY/start").status_code == 200
    response = client.post(f"/ping/{key}/SALES-DAILY", data=b"loaded 1200 rows", content_type="text/plain")
    assert response.status_code == 200
    run = Run.objects.get()
    assert (run.status, run.exit_status, run.log_excerpt, run.source) == ("SUCCEEDED", 0, "loaded 1200 rows", "PING")
    client.post(f"/ping/{key}/SALES-DAILY/3", data=b"disk full", content_type="text/plain")
    failed = Run.objects.exclude(pk=run.pk).get()
    assert (failed.status, failed.exit_status, failed.error_text) == ("FAILED", 3, "disk full")
    assert client.get(f"/ping/{key}/SALES-DAILY/fail").status_code == 200
    assert client.get(f"/ping/{key}/SALES-DAILY/999").status_code == 400


def test_a_ping_key_can_do_nothing_else(active_loader, token_for, new_loader):
    key = token_for(active_loader, IngestToken.Kind.PING)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = send(api, "post", "/api/v1/signals/", {"loader_code": "SALES-DAILY"})
    assert response.status_code == 401
    new_loader("OTHER")
    assert Client().get(f"/ping/{key}/OTHER").status_code == 403
    assert Client().get("/ping/wrong-key/SALES-DAILY").status_code == 404
    api_token = token_for(active_loader)
    assert Client().get(f"/ping/{api_token}/SALES-DAILY").status_code == 404  # API tokens don't ping


def test_tokens_api_shows_the_plaintext_once(active_loader, editor, viewer):
    client = APIClient()
    client.force_authenticate(editor)
    created = client.post("/api/v1/loaders/SALES-DAILY/tokens/", {"name": "airflow"}, format="json")
    assert created.status_code == 201
    raw = created.json()["token"]
    listed = client.get("/api/v1/loaders/SALES-DAILY/tokens/").json()
    assert raw not in json.dumps(listed) and listed[0]["prefix"] == raw[:12]
    token_id = listed[0]["id"]
    client.force_authenticate(viewer)
    assert client.post("/api/v1/loaders/SALES-DAILY/tokens/", {"name": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/loaders/SALES-DAILY/tokens/{token_id}/").status_code == 403
    client.force_authenticate(editor)
    assert client.delete(f"/api/v1/loaders/SALES-DAILY/tokens/{token_id}/").status_code == 204
    assert IngestToken.objects.get().revoked_at is not None


def test_metrics_count_signals_and_runs(job, client):
    before = client.get("/metrics").content.decode()
    send(
        job,
        "post",
        "/api/v1/signals/",
        [{"loader_code": "SALES-DAILY", "signal_key": "x", "validation_status": "FAILED"}] * 3,
    )
    text = client.get("/metrics").content.decode()
    line = 'signals_received_total{loader_code="SALES-DAILY",validation_status="FAILED"}'
    count = lambda t: float(next((ln.split()[-1] for ln in t.splitlines() if ln.startswith(line)), 0))  # noqa: E731
    assert count(text) - count(before) == 3
    assert "loader_execution_seconds" in text


def test_metrics_need_the_token_when_one_is_set(db, client, settings):  # a scrape reads the state gauges
    settings.METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403


@pytest.mark.parametrize("header", ["HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"])
def test_metrics_through_a_local_proxy_need_the_token(db, client, settings, header):
    """A reverse proxy on the same machine makes every visitor look local: without METRICS_TOKEN,
    a forwarded request is refused; with it, the token decides."""
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 200  # Prometheus beside the app
    refused = client.get("/metrics", **{header: "203.0.113.9"})
    assert refused.status_code == 403 and "through a proxy" in refused.content.decode()
    settings.METRICS_TOKEN = "scrape-secret"
    forwarded = {header: "203.0.113.9", "HTTP_AUTHORIZATION": "Bearer scrape-secret"}
    assert client.get("/metrics", **forwarded).status_code == 200


def test_whoami_tells_a_job_which_loader_its_token_is_for(job, editor):
    assert job.get("/api/v1/whoami/").json() == {
        "kind": "ingest_token",
        "name": "etl job",
        "loader_code": "SALES-DAILY",
    }
    client = APIClient()
    client.force_authenticate(editor)
    assert client.get("/api/v1/whoami/").json()["roles"] == ["Editor"]
    assert APIClient().get("/api/v1/whoami/").status_code == 401


def test_metrics_include_http_request_counts(client, job):
    job.get("/api/v1/whoami/")
    text = client.get("/metrics").content.decode()
    assert 'django_http_requests_total{method="GET",status="200",view="v1:whoami-list"}' in text
    assert "django_http_request_duration_seconds_bucket" in text


def test_run_finish_validates_the_correlation_id_and_huge_counts(job):
    run_id = send(job, "post", "/api/v1/runs/", {"loader_code": "SALES-DAILY"}).json()["run_id"]
    response = send(
        job, "patch", f"/api/v1/runs/{run_id}/", {"status": "SUCCEEDED", "correlation_id": "a\x00b", "rows_read": 2**70}
    )
    assert response.status_code == 400
    assert set(response.json()) == {"correlation_id", "rows_read"}


def test_a_ping_start_body_with_nul_bytes_is_kept_safely(active_loader, token_for):
    key = token_for(active_loader, IngestToken.Kind.PING)
    response = Client().post(f"/ping/{key}/SALES-DAILY/start", data=b"a\x00b" * 5000, content_type="text/plain")
    assert response.status_code == 200
    run = Run.objects.get()
    assert "\x00" not in run.log_excerpt and len(run.log_excerpt) <= 10_000


def test_a_bad_ping_action_says_what_to_use(active_loader, token_for):
    key = token_for(active_loader, IngestToken.Kind.PING)
    response = Client().get(f"/ping/{key}/SALES-DAILY/later")
    assert response.status_code == 400
    assert "Use start, fail, or an exit status from 0 to 255." in response.content.decode()


def test_a_head_request_records_no_ping(active_loader, token_for):
    key = token_for(active_loader, IngestToken.Kind.PING)
    assert Client().head(f"/ping/{key}/SALES-DAILY").status_code == 200
    assert not Run.objects.exists()


def test_a_retried_start_ping_is_the_same_run(active_loader, token_for, settings):
    """curl --retry sends the start again when its answer was lost: one run, not two."""
    key = token_for(active_loader, kind="PING")
    client = Client()
    first = client.get(f"/ping/{key}/SALES-DAILY/start").content.decode().split()[1]
    again = client.get(f"/ping/{key}/SALES-DAILY/start").content.decode().split()[1]
    assert first == again and Run.objects.count() == 1
    settings.PING_START_RETRY_SECONDS = 0  # past the retry window, a start is a new run
    assert client.get(f"/ping/{key}/SALES-DAILY/start").content.decode().split()[1] != first
    assert Run.objects.filter(status="RUNNING").count() == 2


def test_rid_ties_a_start_to_its_finish_and_makes_retries_harmless(active_loader, token_for):
    key = token_for(active_loader, kind="PING")
    client = Client()
    night, noon = "7d3c1b7e-9f0a-4a51-8a60-6f1f3a4c2b10", "0b4f6a55-2c1e-4a7a-9d3b-1e2f3a4b5c6d"
    for rid in (night, noon, night):  # two overlapping runs, and a retried start of the first
        assert client.get(f"/ping/{key}/SALES-DAILY/start?rid={rid}").status_code == 200
    assert Run.objects.count() == 2
    assert client.get(f"/ping/{key}/SALES-DAILY/fail?rid={night}").content.decode().startswith(f"OK {night} FAILED")
    assert Run.objects.get(run_id=noon).status == "RUNNING"  # the other run is untouched
    assert client.get(f"/ping/{key}/SALES-DAILY/fail?rid={night}").status_code == 200  # a retried finish
    assert Run.objects.get(run_id=night).status == "FAILED" and Run.objects.count() == 2
    assert client.get(f"/ping/{key}/SALES-DAILY?rid={noon}").content.decode() == f"OK {noon} SUCCEEDED\n"


def test_a_bad_rid_is_refused_naming_it(active_loader, token_for):
    key = token_for(active_loader, kind="PING")
    response = Client().get(f"/ping/{key}/SALES-DAILY/start?rid=tonight")
    assert response.status_code == 400 and "rid: Must be a UUID" in response.content.decode()
    assert Run.objects.count() == 0


def test_pings_accept_a_trailing_slash(active_loader, token_for):
    key = token_for(active_loader, kind=IngestToken.Kind.PING)
    client = Client()
    started = client.get(f"/ping/{key}/SALES-DAILY/start/?rid=6f1c2a3e-0000-4000-8000-000000000001")
    assert started.status_code == 200 and "RUNNING" in started.content.decode()
    done = client.post(
        f"/ping/{key}/SALES-DAILY/?rid=6f1c2a3e-0000-4000-8000-000000000001",
        data=b"loaded 7 rows",
        content_type="text/plain",
    )
    assert done.status_code == 200 and "SUCCEEDED" in done.content.decode()
    assert Run.objects.get().log_excerpt == "loaded 7 rows"  # no redirect: the body arrived
    assert client.get(f"/ping/{key}/SALES-DAILY/fail/").status_code == 200
    assert client.get(f"/ping/{key}/SALES-DAILY/999/").status_code == 400
    assert client.get("/ping/wrong-key/SALES-DAILY/").status_code == 404
