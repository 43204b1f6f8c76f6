"""The incident lifecycle by people, refused transitions, and dedup under concurrent evaluation."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import InvalidInput, PermissionRefused, StateConflict
from incidents import services
from incidents.detection import rule_evaluate, rule_evaluate_claimed
from incidents.models import EventKind, Incident, IncidentStatus
from tests.conftest import at_once
from tests.incidents.conftest import NOW, add_signals, rule_held_by_another_worker


@pytest.fixture
def incident(rule_factory, active_loader) -> Incident:
    add_signals(active_loader, failed=5, ok=5)
    rule = rule_factory("signal_failure_rate", threshold=5.0)
    rule_evaluate(rule=rule, now=NOW)
    return Incident.objects.get()


def test_acknowledge_resolve_close(incident, operator):
    services.incident_acknowledge(user=operator, incident=incident, comment="looking")
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == (IncidentStatus.ACKNOWLEDGED, operator)
    services.incident_comment(user=operator, incident=incident, text="restarted the job")
    services.incident_resolve(user=operator, incident=incident, comment="fixed")
    services.incident_close(user=operator, incident=incident)
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.CLOSED and incident.resolved_by == operator
    kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds == [
        EventKind.OPENED,
        EventKind.ACKNOWLEDGED,
        EventKind.COMMENTED,
        EventKind.RESOLVED,
        EventKind.CLOSED,
    ]
    assert incident.events.get(kind=EventKind.COMMENTED).actor == operator


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ("acknowledged", "acknowledge"),
        ("resolved", "acknowledge"),
        ("resolved", "resolve"),
        ("closed", "resolve"),
        ("closed", "close"),
    ],
)
def test_refused_transitions(incident, operator, setup, action):
    if setup in ("acknowledged",):
        services.incident_acknowledge(user=operator, incident=incident)
    if setup in ("resolved", "closed"):
        services.incident_resolve(user=operator, incident=incident)
    if setup == "closed":
        services.incident_close(user=operator, incident=incident)
    before = Incident.objects.get(pk=incident.pk).status
    with pytest.raises(StateConflict):
        getattr(services, f"incident_{action}")(user=operator, incident=incident)
    assert Incident.objects.get(pk=incident.pk).status == before


def test_roles_without_incident_rights_are_refused(incident, viewer, editor):
    for user in (viewer, editor):
        with pytest.raises(PermissionRefused):
            services.incident_acknowledge(user=user, incident=incident)
        with pytest.raises(PermissionRefused):
            services.incident_comment(user=user, incident=incident, text="hi")


def test_an_empty_comment_is_refused(incident, operator):
    with pytest.raises(InvalidInput):
        services.incident_comment(user=operator, incident=incident, text="  ")


def test_a_closed_incident_stays_closed_and_a_new_breach_opens_a_new_one(incident, operator, active_loader):
    services.incident_close(user=operator, incident=incident)
    later = NOW + dt.timedelta(minutes=1)
    assert rule_evaluate(rule=incident.rule, now=later).decisions[0].action == "held"  # the same breach
    assert Incident.objects.count() == 1
    rule_evaluate(rule=incident.rule, now=NOW + dt.timedelta(minutes=10))  # the failures left the window: clear
    add_signals(active_loader, failed=5, ok=5, at=NOW + dt.timedelta(minutes=20))
    assert rule_evaluate(rule=incident.rule, now=NOW + dt.timedelta(minutes=20)).decisions[0].action == "opened"
    assert Incident.objects.count() == 2
    assert Incident.objects.filter(status=IncidentStatus.OPEN).count() == 1


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_never_open_two_incidents(require_postgres, rule_factory, active_loader):
    add_signals(active_loader, failed=5, ok=5)
    rule = rule_factory("signal_failure_rate", threshold=5.0)
    at_once(lambda: rule_evaluate(rule=rule, now=NOW), 4)
    incident = Incident.objects.get()
    assert incident.occurrences == 1  # one breach, counted once however many evaluations saw it


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_claimed_rule_is_skipped_by_a_second_worker(require_postgres, rule_factory, active_loader):

    rule = rule_factory("signal_failure_rate", threshold=5.0)
    with rule_held_by_another_worker(rule):
        assert rule_evaluate_claimed(rule_id=rule.pk, now=NOW) is None  # skipped, not blocked
    assert rule_evaluate_claimed(rule_id=rule.pk, now=NOW) is not None
