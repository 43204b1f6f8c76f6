"""Incident storms: a detection batch opens and routes its new incidents in bulk, and the result is
exactly what the one-by-one path gives — incidents, timeline, silences, notification states and
deliveries — including a silenced subject, a pending one, an incident to reopen, and a fingerprint
inserted concurrently."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.management.color import no_style
from django.db import connection, transaction

from incidents.detection import (
    Decision,
    EvaluationReport,
    _opens_write,
    fingerprint_of,
    rule_evaluate,
)
from incidents.kinds import Measurement
from incidents.models import DetectionRule, Incident, IncidentEvent, RuleSubjectState, Silence
from integrations.models import Delivery, IncidentNotification
from loaders.models import Loader, LoaderVersion, Team, VersionState
from tests.incidents.conftest import NOW, add_signals

SUBJECTS = 7


@pytest.fixture(autouse=True)
def _routed(settings):
    settings.NOTIFICATIONS_ENABLED = True  # the storm's deliveries are part of the comparison
    settings.SLACK_BOT_TOKEN = "xoxb-test"  # deliveries are only created (no after-commit send)


@pytest.fixture
def storm(db) -> DetectionRule:
    """SUBJECTS loaders failing at NOW, one HIGH rule over them; STM-1 silenced, STM-2 resolved a
    minute ago (it reopens), STM-3 on a second breach of a rule that needs two (pending)."""
    DetectionRule.objects.update(enabled=False)
    team = Team.objects.create(slug="storm", name="Storm")
    loaders = [
        Loader.objects.create(loader_code=f"STM-{i}", name=f"Storm {i}", owner=team, first_activated_at=NOW)
        for i in range(SUBJECTS)
    ]
    for loader in loaders:
        LoaderVersion.objects.create(loader=loader, number=1, state=VersionState.ACTIVE)
        add_signals(loader, failed=5, ok=5)
    rule = DetectionRule.objects.create(name="storm", kind="signal_failure_rate", threshold=5.0, severity="HIGH")
    Silence.objects.create(
        loader=loaders[1], starts_at=NOW - dt.timedelta(hours=1), ends_at=NOW + dt.timedelta(hours=1), comment="work"
    )
    resolved = Incident.objects.create(
        rule=rule,
        loader=loaders[2],
        subject="STM-2",
        title="before",
        severity="HIGH",
        fingerprint=fingerprint_of(rule, "STM-2"),
        first_seen=NOW - dt.timedelta(minutes=10),
        last_seen=NOW - dt.timedelta(minutes=5),
        status="RESOLVED",
        resolved_at=NOW - dt.timedelta(minutes=1),
    )
    RuleSubjectState.objects.create(rule=rule, subject="STM-2", clear_since=NOW - dt.timedelta(minutes=2))
    assert resolved.pk
    return rule


def _outcome(rule: DetectionRule, report: EvaluationReport) -> dict[str, Any]:
    """What an evaluation left, by subject."""
    by_subject = {}
    for incident in Incident.objects.filter(rule=rule).order_by("pk"):
        by_subject.setdefault(incident.subject, []).append(
            {
                "incident": (incident.status, incident.suppressed, incident.title, incident.occurrences),
                "timeline": [(e.kind, e.message, e.data) for e in incident.events.order_by("pk")],
                "notification": list(
                    IncidentNotification.objects.filter(incident=incident).values_list(
                        "rule_id", "tier", "escalations", "next_escalation_at"
                    )
                ),
                "deliveries": [
                    (d.channel.name, d.target, d.purpose, d.tier, d.payload)
                    for d in Delivery.objects.filter(incident=incident).order_by("channel__name", "target")
                ],
            }
        )
    states = {
        s.subject: (s.consecutive_breaches, s.clear_since, s.transitions)
        for s in RuleSubjectState.objects.filter(rule=rule)
    }
    decisions = sorted((d.subject, d.action, d.note) for d in report.decisions)
    return {"incidents": by_subject, "states": states, "decisions": decisions}


def _evaluate(rule: DetectionRule, settings, chunk: int) -> dict[str, Any]:
    """Evaluate with the bulk path in chunks of ``chunk`` (0 = one by one); undo it afterwards."""
    settings.INCIDENT_OPEN_CHUNK_SIZE = chunk
    with transaction.atomic():
        # Both evaluations number their rows alike (PostgreSQL's sequences do not roll back).
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(
                no_style(), [Incident, IncidentEvent, RuleSubjectState, IncidentNotification, Delivery]
            ):
                cursor.execute(sql)
        report = rule_evaluate(rule=DetectionRule.objects.get(pk=rule.pk), now=NOW)
        outcome = _outcome(rule, report)
        transaction.set_rollback(True)
    return outcome


@pytest.mark.parametrize("chunk", [2, 500])
def test_the_bulk_path_gives_what_the_single_path_gives(storm, settings, chunk):
    one_by_one = _evaluate(storm, settings, 0)
    bulk = _evaluate(storm, settings, chunk)
    assert bulk == one_by_one
    actions = dict((subject, action) for subject, action, _note in bulk["decisions"])
    assert actions["STM-0"] == "opened"
    assert actions["STM-1"] == "opened (suppressed)"
    assert actions["STM-2"] == "reopened"
    silenced = bulk["incidents"]["STM-1"][0]
    assert silenced["deliveries"] == []
    assert [kind for kind, _m, _d in silenced["timeline"]] == ["OPENED", "SUPPRESSED", "NOT_NOTIFIED"]
    opened = bulk["incidents"]["STM-0"][0]
    assert [(channel, purpose) for channel, _t, purpose, _tier, _p in opened["deliveries"]] == [
        ("email", "OPENED"),
        ("slack", "OPENED"),
    ]


def test_a_rule_that_needs_two_breaches_waits_in_bulk_as_one_by_one(storm, settings):
    DetectionRule.objects.filter(pk=storm.pk).update(open_after=2)
    one_by_one = _evaluate(storm, settings, 0)
    bulk = _evaluate(storm, settings, 3)
    assert bulk == one_by_one
    assert {action for subject, action, _n in bulk["decisions"] if subject != "STM-2"} == {"pending"}


def test_an_incident_opened_concurrently_is_fired_again_not_duplicated(storm, settings):
    """Between the batch's read and its insert another evaluation opens STM-4's incident: the
    fingerprint's unique index refuses the batch's insert, and each subject takes the one-by-one
    path — STM-4's incident fires again, the others open."""
    opened = [
        Measurement(subject=f"STM-{i}", value=50.0, loader_id=Loader.objects.get(loader_code=f"STM-{i}").pk)
        for i in (3, 4, 5)
    ]
    states = [RuleSubjectState.objects.create(rule=storm, subject=m.subject, consecutive_breaches=1) for m in opened]
    report = EvaluationReport(rule=storm.name)
    report.decisions = [Decision(storm.name, m.subject, m.value, True, "pending") for m in opened]
    other = Incident.objects.create(
        rule=storm,
        loader_id=opened[1].loader_id,
        subject="STM-4",
        title="opened by another evaluation",
        severity="HIGH",
        fingerprint=fingerprint_of(storm, "STM-4"),
        first_seen=NOW,
        last_seen=NOW,
    )
    with transaction.atomic():
        _opens_write(
            storm, [(m, index, state) for index, (m, state) in enumerate(zip(opened, states, strict=True))], NOW, report
        )
    assert [(d.subject, d.action) for d in report.decisions] == [
        ("STM-3", "opened"),
        ("STM-4", "refired"),
        ("STM-5", "opened"),
    ]
    assert Incident.objects.filter(fingerprint=fingerprint_of(storm, "STM-4")).count() == 1
    other.refresh_from_db()
    assert other.occurrences == 2
    assert Delivery.objects.filter(incident__subject__in=["STM-3", "STM-5"], purpose="OPENED").count() == 4


def test_a_storm_costs_a_few_queries_per_chunk_not_per_incident(storm, settings, django_assert_max_num_queries):
    settings.INCIDENT_OPEN_CHUNK_SIZE = 500
    Silence.objects.all().delete()
    with django_assert_max_num_queries(60):  # 7 incidents, one reopened on its own path
        report = rule_evaluate(rule=storm, now=NOW)
    assert sorted(d.action for d in report.decisions).count("opened") == SUBJECTS - 1
