"""Rules, silences and incidents over the API and in the admin."""

from __future__ import annotations

import pytest
from django.contrib import admin
from rest_framework.test import APIClient

from incidents.admin import IncidentAdmin, incident_inline_register
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident, IncidentEvent, Silence
from tests.incidents.conftest import NOW, add_signals


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def incident(rule_factory, active_loader) -> Incident:
    add_signals(active_loader, failed=5, ok=5)
    rule_evaluate(rule=rule_factory("signal_failure_rate", threshold=5.0), now=NOW)
    return Incident.objects.get()


def test_admins_create_rules_and_errors_name_the_field(admin_user, active_loader):
    client = api(admin_user)
    bad = client.post(
        "/api/v1/rules/",
        {"name": "r1", "kind": "signal_failure_rate", "params": {"per": "team"}, "message": "{subject"},
        format="json",
    )
    assert bad.status_code == 400
    assert set(bad.json()) >= {"params.per", "message"}
    ok = client.post(
        "/api/v1/rules/",
        {
            "name": "r1",
            "kind": "metric_threshold",
            "threshold": 10,
            "params": {"signal_key": "lag"},
            "scope": "LOADERS",
            "scope_loaders": ["SALES-DAILY"],
        },
        format="json",
    )
    assert ok.status_code == 201, ok.json()
    rule = DetectionRule.objects.get(name="r1")
    assert rule.params == {"signal_key": "lag", "aggregation": "avg", "per": "loader"}
    assert list(rule.scope_loaders.values_list("loader_code", flat=True)) == ["SALES-DAILY"]
    assert rule.history.latest().history_user == admin_user


def test_only_admins_manage_rules(operator, viewer):
    payload = {"name": "x", "kind": "run_failed"}
    assert api(operator).post("/api/v1/rules/", payload, format="json").status_code == 403
    assert api(viewer).get("/api/v1/rules/").status_code == 200
    kinds = api(viewer).get("/api/v1/rules/kinds/").json()
    assert {"signal_failure_rate", "missed_run", "metric_threshold"} <= set(kinds)
    assert kinds["metric_threshold"]["params"]["aggregation"]["choices"] == [
        "avg",
        "max",
        "min",
        "sum",
        "count",
        "last",
    ]


def test_operators_manage_silences_with_validated_recurrence(operator, viewer, active_loader):
    base = {
        "loader": "SALES-DAILY",
        "starts_at": "2026-03-01T01:00:00Z",
        "ends_at": "2026-03-01T03:00:00Z",
        "timezone": "Europe/Berlin",
    }
    bad = api(operator).post("/api/v1/silences/", {**base, "recurrence": "FREQ=SOMETIMES"}, format="json")
    assert bad.status_code == 400 and "recurrence" in bad.json()
    ok = api(operator).post("/api/v1/silences/", {**base, "recurrence": "FREQ=WEEKLY;BYDAY=SU"}, format="json")
    assert ok.status_code == 201, ok.json()
    assert Silence.objects.get().created_by == operator
    assert api(viewer).post("/api/v1/silences/", base, format="json").status_code == 403


def test_operators_work_incidents_over_the_api(incident, operator, viewer):
    client = api(operator)
    listed = client.get("/api/v1/incidents/?status=OPEN&loader=SALES-DAILY").json()
    assert [i["id"] for i in listed["results"]] == [incident.pk]
    refused = api(viewer).post(f"/api/v1/incidents/{incident.pk}/acknowledge/", {}, format="json")
    assert refused.status_code == 403 and "acknowledge" in refused.json()["detail"]
    done = client.post(f"/api/v1/incidents/{incident.pk}/acknowledge/", {"comment": "on it"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "ACKNOWLEDGED"
    again = client.post(f"/api/v1/incidents/{incident.pk}/acknowledge/", {}, format="json")
    assert again.status_code == 409
    comment = client.post(f"/api/v1/incidents/{incident.pk}/comments/", {"text": "restarted"}, format="json")
    assert comment.status_code == 201
    assert [c["message"] for c in client.get(f"/api/v1/incidents/{incident.pk}/comments/").json()] == ["restarted"]
    detail = client.get(f"/api/v1/incidents/{incident.pk}/").json()
    assert [e["kind"] for e in detail["events"]] == ["OPENED", "ACKNOWLEDGED", "COMMENTED"]
    assert client.post(f"/api/v1/incidents/{incident.pk}/resolve/", {}, format="json").json()["status"] == "RESOLVED"
    assert client.post(f"/api/v1/incidents/{incident.pk}/close/", {}, format="json").json()["status"] == "CLOSED"


def test_the_admin_rule_form_shows_parameter_errors(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/incidents/detectionrule/add/",
        {
            "name": "bad",
            "rule_type": "TRANSACTION",
            "kind": "metric_threshold",
            "params": "{}",
            "operator": "GT",
            "threshold": "1",
            "window_seconds": "300",
            "severity": "LOW",
            "scope": "ALL",
            "interval_seconds": "60",
            "open_after": "1",
            "resolve_after_seconds": "0",
            "enabled": "on",
        },
    )
    assert response.status_code == 200
    assert "Give signal_key or metric_type." in response.content.decode()
    assert not DetectionRule.objects.filter(name="bad").exists()


def test_the_admin_incident_page_has_the_lifecycle_buttons(client, operator, incident):
    client.force_login(operator)
    page = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert "Acknowledge" in page and "Timeline" in page
    client.post(f"/admin/incidents/incident/{incident.pk}/do/acknowledge/", {"comment": "mine"})
    incident.refresh_from_db()
    assert incident.status == "ACKNOWLEDGED"
    client.post(f"/admin/incidents/incident/{incident.pk}/do/comment/", {"comment": "db restarted"})
    assert incident.events.filter(kind="COMMENTED", message="db restarted").exists()


def test_viewers_see_incidents_but_get_no_buttons(client, viewer, incident):
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert "Timeline" in page and "do/acknowledge" not in page
    client.post(f"/admin/incidents/incident/{incident.pk}/do/acknowledge/")
    assert Incident.objects.get(pk=incident.pk).status == "OPEN"


class _TimelineInline(admin.TabularInline):
    model = IncidentEvent
    fields = ("kind", "message")
    readonly_fields = fields
    verbose_name_plural = "timeline rows from another app"


def test_an_app_above_shows_its_rows_on_the_incident_page_once(client, viewer, incident, monkeypatch):
    monkeypatch.setattr(IncidentAdmin, "inlines", IncidentAdmin.inlines)  # restored after the test
    incident_inline_register(_TimelineInline)
    incident_inline_register(_TimelineInline)  # a module imported twice adds nothing
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert page.count("Timeline rows from another app") == 1
