"""/healthz and /readyz as a load balancer and an operator read them."""

from __future__ import annotations

from etl_monitor.celery import app


def test_healthz_answers_without_auth(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_an_unreachable_broker(client, db, monkeypatch):
    # A real connection attempt to a closed port, not a stub.
    monkeypatch.setitem(app.conf, "broker_url", "redis://user:pw-in-url@127.0.0.1:1/0")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unavailable")
    assert "pw-in-url" not in response.content.decode()


def test_readyz_reports_the_last_worker_heartbeat(client, db):
    from etl_monitor.tasks import platform_heartbeat

    stamp = platform_heartbeat()  # eager in tests: runs the real task body
    assert client.get("/readyz").json()["worker_heartbeat"] == stamp


POD = "10.244.1.17:8000"  # how a kubelet probe or a Prometheus scrape addresses a pod


def test_probes_answer_a_pod_address_that_allowed_hosts_refuses(client, db, settings):
    settings.ALLOWED_HOSTS = ["etl-monitor.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/healthz", HTTP_HOST=POD).json() == {"status": "ok"}
    assert client.get("/readyz", HTTP_HOST=POD).status_code == 200
    scrape = client.get("/metrics", HTTP_HOST=POD, HTTP_AUTHORIZATION="Bearer scrape-token")
    assert scrape.status_code == 200
    assert b"signals_received_total" in scrape.content


def test_metrics_by_pod_address_still_needs_its_token(client, db, settings):
    settings.ALLOWED_HOSTS = ["etl-monitor.example.com"]
    settings.METRICS_TOKEN = "scrape-token"
    assert client.get("/metrics", HTTP_HOST=POD).status_code == 401
    assert client.get("/metrics", HTTP_HOST=POD, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_every_other_path_keeps_host_validation_and_the_https_redirect(client, db, settings):
    settings.ALLOWED_HOSTS = ["etl-monitor.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/admin/login/", HTTP_HOST=POD).status_code == 400
    assert client.get("/healthz/", HTTP_HOST=POD).status_code == 400  # only the exact probe paths
    assert client.post("/healthz", HTTP_HOST=POD).status_code == 400  # and only reads
    redirect = client.get("/admin/login/", HTTP_HOST="etl-monitor.example.com")
    assert redirect.status_code == 301
    assert redirect["Location"].startswith("https://etl-monitor.example.com/")
