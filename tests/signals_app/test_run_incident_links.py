"""Runs and incidents link both ways in the API: a run says where its incidents are, an
incident lists the runs that fired it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from signals_app import services, tokens
from signals_app.models import Run, RunStatus


def _api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _run(editor, status: str, error: str = "") -> Run:
    writer = tokens.Writer(user=editor)
    run, _created = services.run_start(writer=writer, data={"loader_code": "SALES-DAILY"})
    return services.run_finish(writer=writer, run=run, data={"status": status, "error_text": error})


@pytest.fixture
def failed_incident(active_loader, editor):
    """Detection opens "Run failed" for SALES-DAILY after one failed run (and a good one)."""
    good = _run(editor, RunStatus.SUCCEEDED)
    bad = _run(editor, RunStatus.FAILED, "disk full")
    rule_evaluate(rule=DetectionRule.objects.get(name="Run failed"), now=timezone.now() + dt.timedelta(seconds=1))
    return Incident.objects.get(loader=active_loader, rule__kind="run_failed"), bad, good


def test_an_incident_lists_the_runs_that_fired_it(viewer, failed_incident):
    incident, bad, _good = failed_incident
    body = _api(viewer).get(f"/api/v1/incidents/{incident.pk}/").json()
    assert body["triggering_runs"] == [{"run_id": str(bad.run_id), "url": f"/api/v1/runs/{bad.run_id}/"}]


def test_a_run_links_to_the_incidents_it_fired(viewer, failed_incident):
    incident, bad, good = failed_incident
    client = _api(viewer)
    run = client.get(f"/api/v1/runs/{bad.run_id}/").json()
    assert run["url"] == f"/api/v1/runs/{bad.run_id}/"
    assert run["incidents_url"] == f"/api/v1/incidents/?run={bad.run_id}"
    incidents = client.get(run["incidents_url"]).json()
    assert [i["id"] for i in incidents["results"]] == [incident.pk]
    good_incidents = client.get(f"/api/v1/incidents/?run={good.run_id}").json()
    assert good_incidents["results"] == []  # a good run fired nothing


def test_an_incident_naming_its_run_links_exactly_that_run(viewer, active_loader, editor):
    slow = _run(editor, RunStatus.SUCCEEDED)
    _run(editor, RunStatus.SUCCEEDED)
    now = timezone.now()
    incident = Incident.objects.create(
        loader=active_loader,
        title="SALES-DAILY ran too long",
        severity="MEDIUM",
        category="TRANSACTION",
        subject="SALES-DAILY",
        fingerprint="sales-daily-duration",
        first_seen=now,
        last_seen=now,
        metrics={"value": 3600, "run_id": str(slow.run_id)},
    )
    client = _api(viewer)
    body = client.get(f"/api/v1/incidents/{incident.pk}/").json()
    assert [r["run_id"] for r in body["triggering_runs"]] == [str(slow.run_id)]
    listed = client.get(f"/api/v1/incidents/?run={slow.run_id}").json()["results"]
    assert [i["id"] for i in listed] == [incident.pk]


def test_a_run_filter_that_is_no_uuid_is_a_400_naming_it(viewer, active_loader):
    response = _api(viewer).get("/api/v1/incidents/?run=not-a-run")
    assert response.status_code == 400
    assert "run" in response.json()


def test_an_unknown_run_has_no_incidents(viewer, active_loader):
    response = _api(viewer).get("/api/v1/incidents/?run=6f1c2a3e-0000-4000-8000-000000000009")
    assert response.status_code == 200 and response.json()["results"] == []
