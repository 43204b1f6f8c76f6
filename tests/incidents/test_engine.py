"""The evaluation engine: open once, fire again, hysteresis, auto-resolve, reopen, flapping, silences."""

from __future__ import annotations

import datetime as dt

import pytest

from incidents.detection import rule_evaluate
from incidents.events import incident_event
from incidents.models import EventKind, Incident, IncidentStatus, Silence
from incidents.silences import silence_is_active
from signals_app.models import Signal
from tests.incidents.conftest import NOW, add_signals

MIN = dt.timedelta(minutes=1)


@pytest.fixture
def failing(rule_factory, active_loader):
    """A failure-rate rule over SALES-DAILY with signals that breach it at NOW."""
    add_signals(active_loader, failed=5, ok=5)
    return rule_factory(
        "signal_failure_rate",
        threshold=5.0,
        severity="HIGH",
        window_seconds=300,
        message="{subject}: {value}% of signals failed (threshold {threshold}%)",
        suggestion="Check the {subject} job logs.",
    )


def events(incident) -> list[str]:
    return list(incident.events.values_list("kind", flat=True))


def test_a_breach_opens_one_incident_and_an_ongoing_one_is_no_new_occurrence(failing, settings):
    settings.INCIDENT_REFIRE_EVENT_SECONDS = 120
    first = rule_evaluate(rule=failing, now=NOW)
    assert [d.action for d in first.decisions] == ["opened"]
    assert [d.action for d in rule_evaluate(rule=failing, now=NOW + MIN).decisions] == ["ongoing"]
    incident = Incident.objects.get()
    assert (incident.status, incident.occurrences, incident.severity) == ("OPEN", 1, "HIGH")
    assert incident.title == "SALES-DAILY: 50% of signals failed (threshold 5%)"
    assert incident.suggestion == "Check the SALES-DAILY job logs."
    assert incident.metrics["failed"] == 5 and incident.loader.loader_code == "SALES-DAILY"
    assert events(incident) == [EventKind.OPENED]  # a minute later: counted, not yet a timeline entry
    rule_evaluate(rule=failing, now=NOW + 3 * MIN)
    assert events(Incident.objects.get()) == [EventKind.OPENED, EventKind.REFIRED]  # "still firing"
    assert Incident.objects.get().events.last().message == "Still firing."


def test_hysteresis_needs_n_breaches_before_opening(failing):
    failing.open_after = 3
    failing.save()
    assert rule_evaluate(rule=failing, now=NOW).decisions[0].action == "pending"
    assert rule_evaluate(rule=failing, now=NOW + MIN).decisions[0].action == "pending"
    assert not Incident.objects.exists()
    assert rule_evaluate(rule=failing, now=NOW + 2 * MIN).decisions[0].action == "opened"


def test_it_resolves_by_itself_once_clear_long_enough(failing, active_loader):
    failing.resolve_after_seconds = 120
    failing.save()
    rule_evaluate(rule=failing, now=NOW)
    later = NOW + 10 * MIN  # the failed signals have left the 5-minute window
    add_signals(active_loader, failed=0, ok=10, at=later)
    assert rule_evaluate(rule=failing, now=later).decisions[0].action == "pending"
    assert rule_evaluate(rule=failing, now=later + 3 * MIN).decisions[0].action == "resolved"
    incident = Incident.objects.get()
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_by is None
    assert events(incident)[-1] == EventKind.RESOLVED


def test_no_data_counts_as_clear(failing):
    rule_evaluate(rule=failing, now=NOW)
    decisions = rule_evaluate(rule=failing, now=NOW + 30 * MIN).decisions
    assert [(d.subject, d.action) for d in decisions] == [("SALES-DAILY", "resolved")]


def test_a_breach_soon_after_resolving_reopens_and_later_opens_anew(failing, active_loader, settings):
    settings.INCIDENT_REOPEN_SECONDS = 3600
    rule_evaluate(rule=failing, now=NOW)
    rule_evaluate(rule=failing, now=NOW + 10 * MIN)  # clear → resolved
    add_signals(active_loader, failed=5, ok=0, at=NOW + 20 * MIN)
    assert rule_evaluate(rule=failing, now=NOW + 20 * MIN).decisions[0].action == "reopened"
    assert Incident.objects.count() == 1 and Incident.objects.get().status == "OPEN"
    rule_evaluate(rule=failing, now=NOW + 40 * MIN)  # resolved again
    add_signals(active_loader, failed=5, ok=0, at=NOW + 200 * MIN)
    assert rule_evaluate(rule=failing, now=NOW + 200 * MIN).decisions[0].action == "opened"
    assert Incident.objects.count() == 2


def test_flapping_keeps_the_incident_open(failing, active_loader, settings):
    settings.INCIDENT_FLAP_THRESHOLD = 3
    t = NOW
    for _cycle in range(3):
        add_signals(active_loader, failed=5, ok=0, at=t)
        rule_evaluate(rule=failing, now=t)
        t += 10 * MIN
        rule_evaluate(rule=failing, now=t)  # clear
        t += MIN
    incident = Incident.objects.get()
    assert incident.flapping and incident.status == IncidentStatus.OPEN
    assert EventKind.FLAPPING in events(incident)


def test_the_domain_event_is_sent_after_commit(failing, django_capture_on_commit_callbacks):
    received = []

    def listener(sender, event, **kwargs):
        received.append(event.kind)

    incident_event.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            rule_evaluate(rule=failing, now=NOW)
    finally:
        incident_event.disconnect(listener)
    assert received == [EventKind.OPENED]


def test_a_silence_marks_the_incident_suppressed(failing, active_loader):
    Silence.objects.create(loader=active_loader, starts_at=NOW - MIN, ends_at=NOW + MIN, comment="deploy window")
    assert rule_evaluate(rule=failing, now=NOW).decisions[0].action == "opened (suppressed)"
    incident = Incident.objects.get()
    assert incident.suppressed and events(incident) == [EventKind.OPENED, EventKind.SUPPRESSED]


def test_a_silence_for_another_loader_does_not_match(failing, new_loader):
    Silence.objects.create(loader=new_loader("OTHER"), starts_at=NOW - MIN, ends_at=NOW + MIN)
    rule_evaluate(rule=failing, now=NOW)
    assert not Incident.objects.get().suppressed


def test_a_recurring_silence_follows_local_time_across_daylight_saving(db):
    # Every Sunday 02:00-04:00 Europe/Berlin.
    silence = Silence(
        starts_at=dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.UTC),  # Sun 1 March 02:00 CET
        ends_at=dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.UTC),
        recurrence="FREQ=WEEKLY;BYDAY=SU",
        timezone="Europe/Berlin",
    )
    # Winter (CET, UTC+1): Sunday 8 March 02:30 local = 01:30 UTC.
    assert silence_is_active(silence, dt.datetime(2026, 3, 8, 1, 30, tzinfo=dt.UTC))
    # Summer (CEST, UTC+2) after the 29 March change: Sunday 5 April 02:30 local = 00:30 UTC.
    assert silence_is_active(silence, dt.datetime(2026, 4, 5, 0, 30, tzinfo=dt.UTC))
    assert not silence_is_active(silence, dt.datetime(2026, 4, 5, 2, 30, tzinfo=dt.UTC))  # 04:30 local
    assert not silence_is_active(silence, dt.datetime(2026, 4, 6, 0, 30, tzinfo=dt.UTC))  # a Monday


def test_signals_outside_scope_are_not_evaluated(rule_factory, active_loader, new_loader):
    from incidents.models import Scope

    other = new_loader("OTHER")
    add_signals(other, failed=5, ok=0)
    rule = rule_factory("signal_failure_rate", threshold=5.0, scope=Scope.LOADERS)
    rule.scope_loaders.set([active_loader])
    assert rule_evaluate(rule=rule, now=NOW).decisions == []
    assert Signal.objects.filter(loader=other).count() == 5
