"""Edge cases: DST fold, templates that cannot be filled, rule validation, fast path scope, flapping reset."""

from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from etl_monitor.errors import InvalidInput
from incidents import services
from incidents.detection import rule_evaluate, rule_scope
from incidents.kinds import kind_get
from incidents.models import Incident
from tests.incidents.conftest import NOW, add_run, add_signals


def test_missed_run_accepts_a_run_at_the_first_of_two_identical_local_times(rule_factory, active_loader):
    # 25 Oct 2026, Europe/Berlin: 02:30 happens twice (00:30 and 01:30 UTC). The job ran at the first one.
    active_loader.versions.update(decided_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC))
    add_run(active_loader, started=dt.datetime(2026, 10, 25, 0, 30, tzinfo=dt.UTC))
    rule = rule_factory("missed_run")
    m = kind_get("missed_run").evaluate(rule, rule_scope(rule), dt.datetime(2026, 10, 25, 2, 0, tzinfo=dt.UTC))
    assert m[0].breached is False


def test_a_template_that_cannot_be_filled_is_shown_as_written(rule_factory, active_loader):
    add_signals(active_loader, failed=5, ok=0)
    rule = rule_factory("signal_failure_rate", threshold=5.0, message="rate {value:.1f} {0}")
    report = rule_evaluate(rule=rule, now=NOW)
    assert report.decisions[0].action == "opened"
    assert Incident.objects.get().title == "rate {value:.1f} {0}"


def test_rule_validation_catches_empty_loader_scopes_and_min_without_threshold(admin_user):
    with pytest.raises(InvalidInput) as exc:
        services.rule_save(user=admin_user, data={"name": "a", "kind": "run_failed", "scope": "LOADERS"})
    assert "scope_loaders" in exc.value.errors
    with pytest.raises(InvalidInput) as exc:
        services.rule_save(user=admin_user, data={"name": "b", "kind": "run_duration", "params": {"mode": "min"}})
    assert "threshold" in exc.value.errors


def test_the_rules_api_refuses_unknown_fields(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    response = client.post("/api/v1/rules/", {"name": "x", "kind": "run_failed", "treshold": 3}, format="json")
    assert response.status_code == 400 and response.json() == {"treshold": ["Unknown field."]}


def test_a_fast_path_evaluation_leaves_the_rules_schedule_alone(rule_factory, active_loader):
    rule = rule_factory("run_failed", threshold=0.0)
    rule_evaluate(rule=rule, now=NOW)
    rule.refresh_from_db()
    due = rule.next_due_at
    rule_evaluate(rule=rule, now=NOW + dt.timedelta(seconds=5), loader_id=active_loader.pk)
    rule.refresh_from_db()
    assert rule.next_due_at == due


def test_a_fast_path_evaluation_does_not_resolve_other_loaders(rule_factory, active_loader, new_loader):
    other = new_loader("OTHER")
    add_signals(other, failed=5, ok=0)
    rule = rule_factory("signal_failure_rate", threshold=5.0)
    rule_evaluate(rule=rule, now=NOW)
    rule_evaluate(rule=rule, now=NOW + dt.timedelta(minutes=30), loader_id=active_loader.pk)
    assert Incident.objects.get(subject="OTHER").status == "OPEN"


def test_resolving_by_hand_clears_flapping(rule_factory, active_loader, operator):
    add_signals(active_loader, failed=5, ok=0)
    rule_evaluate(rule=rule_factory("signal_failure_rate", threshold=5.0), now=NOW)
    incident = Incident.objects.get()
    Incident.objects.filter(pk=incident.pk).update(flapping=True)
    services.incident_resolve(user=operator, incident=incident)
    assert Incident.objects.get(pk=incident.pk).flapping is False
