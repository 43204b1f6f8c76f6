"""The tick, detect_once, the seeded rules, and the event-driven fast path from ingestion."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from incidents.models import DetectionRule, Incident
from incidents.tasks import detection_tick
from signals_app import tokens as ingest


def test_the_roadmap_and_etl_rules_are_seeded(db):
    rules = {r.name: r for r in DetectionRule.objects.all()}
    assert rules["Signal failure rate above 5%"].threshold == 5.0 and rules["Signal failure rate above 5%"].enabled
    assert rules["Signal failure rate above 5%"].severity == "HIGH"
    assert not rules["Circuit breaker open"].enabled and rules["Circuit breaker open"].severity == "CRITICAL"
    assert not rules["Container memory above 85%"].enabled
    assert {"Run failed", "Missed run", "Run too long", "Volume out of range"} <= set(rules)


def test_a_failed_run_opens_an_incident_without_waiting_for_the_tick(
    active_loader, editor, django_capture_on_commit_callbacks
):
    _token, raw = ingest.ingest_token_create(user=editor, loader=active_loader, name="job")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    run_id = client.post(
        "/api/v1/runs/", json.dumps({"loader_code": "SALES-DAILY"}), content_type="application/json"
    ).json()["run_id"]
    with django_capture_on_commit_callbacks(execute=True):
        client.patch(
            f"/api/v1/runs/{run_id}/",
            json.dumps({"status": "FAILED", "error_text": "boom"}),
            content_type="application/json",
        )
    incident = Incident.objects.get(rule__name="Run failed")
    assert incident.loader == active_loader and incident.status == "OPEN"
    assert "1 failed run" in incident.title


def test_the_tick_enqueues_only_due_rules(db, django_capture_on_commit_callbacks):
    enabled = DetectionRule.objects.filter(enabled=True).count()
    assert detection_tick() == enabled
    assert detection_tick() == 0  # all evaluated just now; next due after their interval


def test_detect_once_explains_its_decisions(active_loader):
    from django.utils import timezone

    from tests.incidents.conftest import add_signals

    add_signals(active_loader, failed=3, ok=1, at=timezone.now())
    out = StringIO()
    call_command("detect_once", "--rule", "Signal failure rate above 5%", stdout=out)
    text = out.getvalue()
    assert "Signal failure rate above 5% [signal_failure_rate]" in text
    assert "SALES-DAILY: value 75 → BREACH → opened (incident #" in text


def test_detect_once_names_an_unknown_rule(db):
    with pytest.raises(CommandError, match="No rule named 'Nope'"):
        call_command("detect_once", "--rule", "Nope", stdout=StringIO())
