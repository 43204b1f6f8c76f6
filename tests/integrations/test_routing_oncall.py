"""Tiers that name on-call schedules: whoever is on call is told; nobody on call → the next tier
at once, on the timeline. On a controlled clock (detection's ``now``, routing's event time)."""

from __future__ import annotations

import datetime as dt

import pytest

from etl_monitor.errors import InvalidInput
from integrations.models import Delivery, IncidentNotification, NotificationRule
from integrations.notifications.routing import escalations_run
from integrations.notifications.rules import notification_rule_save
from oncall.models import Override, Rotation, RotationMember, Schedule
from tests.integrations.test_routing import T0, kinds, sent

S = dt.timedelta(seconds=1)


@pytest.fixture(autouse=True)
def _slack_configured(settings):
    settings.SLACK_BOT_TOKEN = "xoxb-test"


@pytest.fixture
def schedule(make_user):
    """data-platform: a daily rotation alice → bob handing off at 09:00 UTC, from the day before T0."""
    schedule = Schedule.objects.create(name="Data platform", slug="data-platform", timezone="UTC")
    rotation = Rotation.objects.create(
        schedule=schedule, name="Primary", handoff="DAILY", handoff_time=dt.time(9), start_date=T0.date()
    )
    for position, name in enumerate(["alice", "bob"]):
        user = make_user(name, "Operator")
        user.email = f"{name}@example.com"
        user.save()
        RotationMember.objects.create(rotation=rotation, user=user, position=position)
    return schedule


def _critical_rule(**changes):
    NotificationRule.objects.filter(severity="CRITICAL", team=None, tag=None).update(**changes)


def test_a_tier_naming_a_schedule_tells_whoever_is_on_call(fire, schedule):
    _critical_rule(channels=["email"], recipients=["leads@example.com"], oncall=["data-platform"])
    incident = fire("CRITICAL")  # T0 = 12:00 on the rotation's first day: alice's shift
    assert sent(incident) == [("email", "alice@example.com,leads@example.com", "OPENED")]


def test_an_override_wins_over_the_rotation(fire, schedule, make_user):
    carol = make_user("carol", "Operator")
    carol.email = "carol@example.com"
    carol.save()
    Override.objects.create(schedule=schedule, user=carol, start=T0 - 3600 * S, end=T0 + 3600 * S)
    _critical_rule(channels=["email"], recipients=[], oncall=["data-platform"])
    incident = fire("CRITICAL")
    assert sent(incident) == [("email", "carol@example.com", "OPENED")]


def test_nobody_on_call_tells_the_next_tier_at_once_on_the_timeline(fire, schedule):
    Rotation.objects.filter(schedule=schedule).update(start_date=T0.date() + dt.timedelta(days=1))  # not begun
    _critical_rule(
        channels=["email"],
        recipients=[],
        oncall=["data-platform"],
        escalation_tiers=[{"channels": ["slack"], "slack_channel": "#data-leads"}],
    )
    incident = fire("CRITICAL")
    assert sent(incident) == [("slack", "#data-leads", "ESCALATED")]
    escalated = incident.events.get(kind="ESCALATED")
    assert escalated.message == "Nobody on call in data-platform: tier 1 notified."
    assert "email: nobody on call in data-platform (tier 0)" in incident.events.get(kind="NOT_NOTIFIED").message
    assert IncidentNotification.objects.get(incident=incident).tier == 1
    # The timeout's escalation has nothing left: the last tier was told (no repeat).
    NotificationRule.objects.filter(severity="CRITICAL", team=None, tag=None).update(escalation_repeat=0)
    assert escalations_run(now=T0 + 3600 * S) == 0


def test_nobody_on_call_in_the_last_tier_is_noted(fire, schedule):
    Rotation.objects.filter(schedule=schedule).delete()
    _critical_rule(channels=["email"], recipients=[], oncall=["data-platform"], escalation_tiers=[])
    incident = fire("CRITICAL")
    assert sent(incident) == []
    notes = list(incident.events.filter(kind="NOT_NOTIFIED").values_list("message", flat=True))
    assert "Nobody on call in data-platform, and no further tier to tell." in notes
    assert "ESCALATED" not in kinds(incident)


def test_an_escalation_to_a_tier_with_nobody_on_call_goes_on_to_the_next(fire, schedule):
    Rotation.objects.filter(schedule=schedule).delete()
    _critical_rule(
        channels=["slack"],
        slack_channel="#alerts-critical",
        oncall=[],
        escalation_timeout=300,
        escalation_tiers=[
            {"channels": ["email"], "oncall": ["data-platform"]},
            {"channels": ["email"], "recipients": ["cto@example.com"]},
        ],
    )
    incident = fire("CRITICAL")
    assert escalations_run(now=T0 + 300 * S) == 1
    assert sent(incident, "ESCALATED") == [("email", "cto@example.com", "ESCALATED")]
    messages = list(incident.events.filter(kind="ESCALATED").order_by("pk").values_list("message", flat=True))
    assert messages == [
        "Not acknowledged within 300 s: tier 1 notified.",
        "Nobody on call in data-platform: tier 2 notified.",
    ]


def test_rules_name_only_schedules_that_exist(schedule, admin_user):
    rule = NotificationRule.objects.get(severity="CRITICAL", team=None, tag=None)
    with pytest.raises(InvalidInput) as refused:
        notification_rule_save(
            user=admin_user,
            rule=rule,
            data={"oncall": ["nope"], "escalation_tiers": [{"channels": ["email"], "oncall": "data-platform"}]},
        )
    assert refused.value.errors == {
        "oncall": ["Unknown on-call schedule(s): nope."],
        "escalation_tiers[0].oncall": ["Must be a list of on-call schedule slugs."],
        "escalation_tiers[0].recipients": [
            "Channel email sends email: give at least one recipient or on-call schedule."
        ],
    }
    saved = notification_rule_save(
        user=admin_user,
        rule=rule,
        data={
            "recipients": [],
            "oncall": ["data-platform"],
            "escalation_tiers": [{"channels": ["email"], "oncall": ["data-platform"]}],
        },
    )
    assert saved.oncall == ["data-platform"]
    assert saved.tiers()[1]["oncall"] == ["data-platform"]
    assert Delivery.objects.count() == 0


def test_sms_and_voice_hear_no_still_firing_reminders(fire, schedule, settings):
    from integrations.models import Channel

    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC" + "0" * 32, "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    Channel.objects.create(name="sms", kind="SMS")
    from oncall.models import ContactMethod

    alice = schedule.rotations.get().members.get(position=0).user
    ContactMethod.objects.create(user=alice, kind="PHONE", value="+14155550100", verified_at=T0)
    settings.INCIDENT_REFIRE_EVENT_SECONDS = 60
    _critical_rule(channels=["email", "sms"], recipients=[], oncall=["data-platform"], repeat_interval=60)
    incident = fire("CRITICAL")
    assert sent(incident) == [("email", "alice@example.com", "OPENED"), ("sms", "+14155550100", "OPENED")]
    for minutes in (1, 2, 3):
        fire("CRITICAL", at=T0 + minutes * 60 * S)  # fires again past the repeat interval: reminders
    reminders = sent(incident, "REMINDER")
    assert reminders and set(reminders) == {("email", "alice@example.com", "REMINDER")}


def test_the_person_on_call_is_emailed_at_their_verified_email_contact_methods(fire, schedule):
    from oncall.models import ContactMethod

    alice = schedule.rotations.get().members.get(position=0).user
    ContactMethod.objects.create(user=alice, kind="EMAIL", value="alice.pager@example.com", verified_at=T0)
    ContactMethod.objects.create(user=alice, kind="EMAIL", value="unverified@example.com")
    _critical_rule(channels=["email"], recipients=[], oncall=["data-platform"])
    incident = fire("CRITICAL")
    assert sent(incident) == [("email", "alice.pager@example.com", "OPENED")]
