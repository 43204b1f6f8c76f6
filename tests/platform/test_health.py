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
