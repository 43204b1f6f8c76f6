"""A loader's operational page and its chart data: who may read them, what they hold, and what
field protection keeps out."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from etl_monitor.models import FieldProtection
from incidents.models import Incident
from signals_app.models import IngestToken, RunStatus
from tests.operations.conftest import make_run


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def busy_loader(make_loader):
    """SALES-OPS: runs over the last days, a failed one last, an open and a resolved incident, a token."""
    now = timezone.now()
    loader = make_loader(
        "SALES-OPS", cron="0 2 * * *", timezone="Europe/Berlin", max_duration_minutes=45, expected_rows_min=100,
        expected_rows_max=1000, connection_host="db.internal", connection_password="hunter2-secret",
        approved=now - dt.timedelta(days=10),
    )  # fmt: skip
    for days in (3, 2):
        make_run(loader, started=now - dt.timedelta(days=days), seconds=600, rows=400)
    make_run(loader, RunStatus.FAILED, started=now - dt.timedelta(days=1), seconds=30, rows=None)
    Incident.objects.create(
        title="SALES-OPS run failed", severity="HIGH", category="TRANSACTION", loader=loader, subject="SALES-OPS",
        fingerprint="open-1", first_seen=now, last_seen=now,
    )  # fmt: skip
    Incident.objects.create(
        title="SALES-OPS ran long", severity="LOW", category="TRANSACTION", loader=loader, subject="SALES-OPS",
        fingerprint="old-1", first_seen=now - dt.timedelta(days=5), last_seen=now - dt.timedelta(days=5),
        status="RESOLVED",
    )  # fmt: skip
    IngestToken.objects.create(loader=loader, kind="PING", name="cron box", prefix="pk_abc12", token_hash="h" * 64)
    return loader


def test_anonymous_visitors_are_sent_to_the_login_page(client, busy_loader) -> None:
    response = client.get("/admin/ops/loaders/SALES-OPS/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_a_user_without_a_role_is_refused_the_page_and_the_chart_data(make_user, busy_loader) -> None:
    client = client_for(make_user())
    assert client.get("/admin/ops/loaders/SALES-OPS/").status_code == 403
    response = client.get("/admin/ops/loaders/SALES-OPS/chart.json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Your role does not allow you to see runs."}


def test_anonymous_chart_requests_get_401_not_a_login_page(client, busy_loader) -> None:
    response = client.get("/admin/ops/loaders/SALES-OPS/chart.json")
    assert response.status_code == 401


def test_an_unknown_loader_is_404(viewer, db) -> None:
    assert client_for(viewer).get("/admin/ops/loaders/NOPE/").status_code == 404
    assert client_for(viewer).get("/admin/ops/loaders/NOPE/chart.json").status_code == 404


def test_a_viewer_sees_status_contract_runs_incidents_and_snippets(viewer, busy_loader) -> None:
    page = client_for(viewer).get("/admin/ops/loaders/SALES-OPS/").content.decode()
    status = page.split('id="status"')[1].split("</section>")[0]
    assert ">Failed</span> The last run failed." in status
    contract = page.split('id="contract"')[1].split("</section>")[0]
    assert "0 2 * * *" in contract and "Europe/Berlin" in contract and "db.internal" in contract
    assert "hunter2-secret" not in page
    assert "•••••• (set)" in contract  # the password: masked, never shown
    runs = page.split('id="runs"')[1].split("</section>")[0]
    assert runs.count("/admin/signals_app/run/") == 3
    incidents = page.split('id="incidents"')[1].split("</section>")[0]
    assert "SALES-OPS run failed" in incidents and "SALES-OPS ran long" in incidents
    assert "/admin/incidents/incident/" in incidents
    tokens = page.split('id="tokens"')[1].split("</section>")[0]
    assert "pk_abc12" in tokens and "h" * 64 not in page
    assert "http://testserver/ping/$PING_KEY/SALES-OPS/start" in tokens
    assert "http://testserver/api/v1/runs/" in tokens
    assert "monitor.run(&quot;SALES-OPS&quot;)" in tokens


def test_the_chart_data_holds_30_days_of_finished_runs_the_expected_range_and_the_approval(viewer, busy_loader) -> None:
    data = client_for(viewer).get("/admin/ops/loaders/SALES-OPS/chart.json").json()
    assert data["loader"] == "SALES-OPS"
    assert len(data["t"]) == 3 and data["t"] == sorted(data["t"])
    assert data["duration_seconds"] == [600.0, 600.0, 30.0]
    assert data["rows_written"] == [400, 400, None]
    assert data["failed"] == [False, False, True]
    assert data["expected"] == {"duration_max_seconds": 2700, "rows_min": 100, "rows_max": 1000}
    assert [a["label"] for a in data["approvals"]] == ["v1 approved"]
    assert data["to"] - data["from"] == 30 * 86400


def test_hidden_contract_fields_leave_the_page_and_the_chart_bands(viewer, busy_loader) -> None:
    for name in ("connection_host", "expected_rows_max", "max_duration_minutes"):
        FieldProtection.objects.create(model_label="loaders.loaderversion", field_name=name, level="HIDDEN")
    client = client_for(viewer)
    page = client.get("/admin/ops/loaders/SALES-OPS/").content.decode()
    assert "db.internal" not in page
    assert "Connection host" not in page and "Max duration minutes" not in page
    data = client.get("/admin/ops/loaders/SALES-OPS/chart.json").json()
    assert data["expected"] == {"duration_max_seconds": None, "rows_min": 100, "rows_max": None}


def test_the_loader_change_page_links_to_the_operational_page(admin_user, busy_loader) -> None:
    page = client_for(admin_user).get(f"/admin/loaders/loader/{busy_loader.pk}/change/").content.decode()
    assert "/admin/ops/loaders/SALES-OPS/" in page
