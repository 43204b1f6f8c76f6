"""Routing and escalation on a controlled clock: who is told, when, and when nobody is."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import PermissionRefused
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident, Silence
from incidents.services import incident_acknowledge, incident_resolve
from integrations.models import Delivery, IncidentNotification, NotificationRule
from integrations.notifications.routing import escalations_run
from loaders.models import Tag, Team
from tests.integrations.conftest import ROUTING_T0

T0 = ROUTING_T0
S = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _slack_configured(settings):
    # Deliveries are only created here (no after-commit send): no request leaves the test.
    settings.SLACK_BOT_TOKEN = "xoxb-test"


def breach_ends(at: dt.datetime) -> None:
    """Detection sees the failures gone (out of the rules' window): the next failure is a new breach."""
    for rule in DetectionRule.objects.filter(name__startswith="failures "):
        rule_evaluate(rule=rule, now=at)


def sent(incident: Incident, purpose: str | None = None) -> list[tuple[str, str, str]]:
    deliveries = Delivery.objects.filter(incident=incident).order_by("pk")
    if purpose:
        deliveries = deliveries.filter(purpose=purpose)
    return [(d.channel.name, d.target, d.purpose) for d in deliveries]


def kinds(incident: Incident) -> list[str]:
    return list(incident.events.values_list("kind", flat=True))


def test_the_roadmap_tiers_are_seeded(db):
    rules = {r.severity: r for r in NotificationRule.objects.filter(team=None, tag=None)}
    assert rules["CRITICAL"].channels == ["email", "slack"]
    assert rules["CRITICAL"].recipients == ["oncall-team@company.com", "platform-leads@company.com"]
    assert (rules["CRITICAL"].slack_channel, rules["CRITICAL"].escalation_timeout) == ("#alerts-critical", 300)
    assert (rules["HIGH"].recipients, rules["HIGH"].escalation_timeout) == (["platform-team@company.com"], 900)
    assert (rules["MEDIUM"].channels, rules["MEDIUM"].slack_channel) == (["slack"], "#alerts-medium")
    assert (rules["LOW"].slack_channel, rules["LOW"].escalation_timeout) == ("#alerts-low", None)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (
            "CRITICAL",
            [
                ("email", "oncall-team@company.com,platform-leads@company.com", "OPENED"),
                ("slack", "#alerts-critical", "OPENED"),
            ],
        ),
        ("HIGH", [("email", "platform-team@company.com", "OPENED"), ("slack", "#alerts-high", "OPENED")]),
        ("MEDIUM", [("slack", "#alerts-medium", "OPENED")]),
        ("LOW", [("slack", "#alerts-low", "OPENED")]),
    ],
)
def test_each_severity_reaches_its_tier(fire, severity, expected):
    incident = fire(severity)
    assert sent(incident) == expected
    state = IncidentNotification.objects.get(incident=incident)
    timeout = NotificationRule.objects.get(severity=severity, team=None, tag=None).escalation_timeout
    assert state.next_escalation_at == (T0 + timeout * S if timeout else None)


def test_a_team_rule_wins_over_a_tag_rule_and_the_severity_rule(fire, active_loader):
    tag = Tag.objects.create(name="finance")
    active_loader.tags.add(tag)
    NotificationRule.objects.create(severity="HIGH", tag=tag, channels=["email"], recipients=["fin@example.com"])
    incident = fire("HIGH")
    assert sent(incident) == [("email", "fin@example.com", "OPENED")]
    incident_resolve(user=None or _admin(), incident=incident)
    Incident.objects.all().delete()
    NotificationRule.objects.create(
        severity="HIGH", team=active_loader.owner, channels=["slack"], slack_channel="#data-platform"
    )
    breach_ends(T0 + 3000 * S)
    incident = fire("HIGH", at=T0 + 3600 * S)
    assert sent(incident) == [("slack", "#data-platform", "OPENED")]


def _admin():
    from django.contrib.auth.models import User

    return User.objects.create_superuser("root", "root@example.com", "x")


def test_an_unacknowledged_incident_escalates_after_the_timeout_then_stops(fire):
    incident = fire("CRITICAL")
    assert escalations_run(now=T0 + 299 * S) == 0
    assert escalations_run(now=T0 + 300 * S) == 1
    escalated = sent(incident, "ESCALATED")
    assert escalated == [
        ("email", "oncall-team@company.com,platform-leads@company.com", "ESCALATED"),
        ("slack", "#alerts-critical", "ESCALATED"),
    ]
    slack = Delivery.objects.get(incident=incident, purpose="ESCALATED", channel__name="slack")
    assert slack.root == Delivery.objects.get(incident=incident, purpose="OPENED", channel__name="slack")  # thread
    assert "ESCALATED" in kinds(incident)
    # The roadmap's rule has no further tier and repeats its last one once: nothing more.
    assert escalations_run(now=T0 + 3600 * S) == 0
    assert len(sent(incident, "ESCALATED")) == 2


def test_escalation_walks_the_tiers_and_repeats_the_last(fire):
    NotificationRule.objects.filter(severity="CRITICAL").update(
        escalation_tiers=[
            {"channels": ["email"], "recipients": ["lead@example.com"]},
            {"channels": ["email", "slack"], "recipients": ["cto@example.com"], "slack_channel": "#exec"},
        ],
        escalation_repeat=2,
    )
    incident = fire("CRITICAL")
    for step in range(1, 7):
        escalations_run(now=T0 + step * 300 * S)
    tiers = list(
        Delivery.objects.filter(incident=incident, purpose="ESCALATED").values_list("tier", "target").order_by("pk")
    )
    assert tiers == [
        (1, "lead@example.com"),
        (2, "cto@example.com"),
        (2, "#exec"),
        (2, "cto@example.com"),  # repeat 1
        (2, "#exec"),
        (2, "cto@example.com"),  # repeat 2, then it stops
        (2, "#exec"),
    ]
    assert IncidentNotification.objects.get(incident=incident).next_escalation_at is None


def test_acknowledging_stops_escalation(fire, operator):
    incident = fire("CRITICAL")
    incident_acknowledge(user=operator, incident=incident)
    assert escalations_run(now=T0 + 301 * S) == 0
    assert sent(incident, "ESCALATED") == []
    # The Slack message is updated in place; email does not hear about an acknowledgement.
    assert sent(incident, "ACKNOWLEDGED") == [("slack", "#alerts-critical", "ACKNOWLEDGED")]
    update = Delivery.objects.get(incident=incident, purpose="ACKNOWLEDGED")
    assert update.payload["update"] is True and update.root.purpose == "OPENED"


def test_resolution_is_sent_to_every_channel_that_was_told(fire, operator):
    incident = fire("HIGH")
    incident_resolve(user=operator, incident=incident, comment="fixed upstream")
    assert sent(incident, "RESOLVED") == [
        ("email", "platform-team@company.com", "RESOLVED"),
        ("slack", "#alerts-high", "RESOLVED"),
    ]
    email = Delivery.objects.get(incident=incident, purpose="RESOLVED", channel__name="email")
    assert email.payload["subject"].startswith("[HIGH] Resolved: ")
    assert f"Resolved by {operator.username}." in email.payload["text"]


def test_a_silenced_incident_notifies_nobody_and_says_so(fire, active_loader):
    Silence.objects.create(loader=active_loader, starts_at=T0 - 60 * S, ends_at=T0 + 3600 * S, comment="deploy")
    incident = fire("CRITICAL")
    assert incident.suppressed and sent(incident) == []
    note = incident.events.get(kind="NOT_NOTIFIED")
    assert "Nobody notified" in note.message and "deploy" in note.message
    assert escalations_run(now=T0 + 301 * S) == 0


def test_re_fires_notify_nobody_except_reminders_at_the_repeat_interval(fire, settings):
    settings.INCIDENT_REFIRE_EVENT_SECONDS = 60
    incident = fire("MEDIUM")
    for minutes in (1, 2, 3):
        fire("MEDIUM", at=T0 + minutes * 60 * S)
    assert sent(incident, "REMINDER") == []  # no repeat interval on the roadmap's rule
    NotificationRule.objects.filter(severity="MEDIUM").update(repeat_interval=600)
    for minutes in (4, 8, 11, 15, 21):
        fire("MEDIUM", at=T0 + minutes * 60 * S)
    reminders = Delivery.objects.filter(incident=incident, purpose="REMINDER")
    assert reminders.count() == 2  # at 11 min and at 21 min (at least 600 s apart)
    assert all(r.root is not None and r.target == "#alerts-medium" for r in reminders)
    assert "Still firing" in reminders.first().payload["thread_text"]


def test_channels_that_cannot_send_are_skipped_and_named(fire, settings):
    settings.SLACK_BOT_TOKEN = ""
    NotificationRule.objects.filter(severity="CRITICAL").update(channels=["email", "slack", "pager"])
    incident = fire("CRITICAL")
    assert [d[0] for d in sent(incident)] == ["email"]
    note = incident.events.get(kind="NOT_NOTIFIED").message
    assert "slack: no Slack bot token" in note and "pager: no such channel" in note


def test_no_rule_for_a_severity_means_nobody_and_the_timeline_says_so(fire):
    NotificationRule.objects.filter(severity="LOW").delete()
    incident = fire("LOW")
    assert sent(incident) == []
    assert "no notification rule for LOW" in incident.events.get(kind="NOT_NOTIFIED").message


def test_a_reopened_incident_is_announced_again(fire, settings):
    settings.INCIDENT_REOPEN_SECONDS = 3600
    incident = fire("MEDIUM")
    incident_resolve(user=_admin(), incident=incident)
    breach_ends(T0 + 400 * S)  # a resolve by hand sticks until a new breach
    again = fire("MEDIUM", at=T0 + 600 * S)
    assert again.pk == incident.pk
    assert [p for _c, _t, p in sent(incident)] == ["OPENED", "RESOLVED", "REOPENED"]
    reopened = Delivery.objects.get(incident=incident, purpose="REOPENED")
    assert reopened.root is None and reopened.payload["text"].startswith("Reopened: ")


def test_nothing_is_routed_when_notifications_are_off(fire, settings):
    settings.NOTIFICATIONS_ENABLED = False
    incident = fire("CRITICAL")
    assert sent(incident) == [] and "NOT_NOTIFIED" not in kinds(incident)


def test_a_team_can_be_routed_without_touching_the_defaults(fire, active_loader):
    other = Team.objects.create(slug="other", name="Other")
    NotificationRule.objects.create(severity="CRITICAL", team=other, channels=["email"], recipients=["o@example.com"])
    incident = fire("CRITICAL")
    assert ("email", "o@example.com", "OPENED") not in sent(incident)


def test_renaming_a_channel_keeps_the_rules_that_route_to_it(db, admin_user):
    from integrations.models import Channel
    from integrations.notifications.channels import channel_save

    NotificationRule.objects.filter(severity="CRITICAL").update(
        escalation_tiers=[{"channels": ["slack", "email"], "recipients": ["boss@example.com"]}]
    )
    channel_save(user=admin_user, data={"name": "slack-main"}, channel=Channel.objects.get(name="slack"))
    critical = NotificationRule.objects.get(severity="CRITICAL", team=None, tag=None)
    assert critical.channels == ["email", "slack-main"]
    assert critical.escalation_tiers[0]["channels"] == ["slack-main", "email"]
    assert NotificationRule.objects.get(severity="LOW", team=None, tag=None).channels == ["slack-main"]
    assert critical.history.first().history_user == admin_user


def test_a_person_escalates_now_the_same_step_as_a_timeout_recorded_with_who_asked(fire, operator, viewer):
    from etl_monitor.errors import StateConflict
    from integrations.notifications.routing import incident_escalate

    NotificationRule.objects.filter(severity="CRITICAL").update(
        escalation_tiers=[{"channels": ["email"], "recipients": ["lead@example.com"]}], escalation_repeat=0
    )
    incident = fire("CRITICAL")
    with pytest.raises(PermissionRefused):
        incident_escalate(user=viewer, incident=incident)
    assert incident_escalate(user=operator, incident=incident, source="Slack") == 1
    assert sent(incident, "ESCALATED") == [("email", "lead@example.com", "ESCALATED")]
    event = incident.events.get(kind="ESCALATED")
    assert event.actor == operator
    assert event.message == f"Escalated by {operator} from Slack: tier 1 notified."
    # The last tier, no repeats: nothing left; the timeout's step finds nothing either.
    with pytest.raises(StateConflict, match="last tier"):
        incident_escalate(user=operator, incident=incident)
    assert escalations_run(now=T0 + 3600 * S) == 0
    incident_acknowledge(user=operator, incident=incident)
    with pytest.raises(StateConflict, match="acknowledged; only an open one"):
        incident_escalate(user=operator, incident=incident)
    assert len(sent(incident, "ESCALATED")) == 1
