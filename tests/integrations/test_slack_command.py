"""The ``/etl-monitor`` slash command: signed like every request from Slack, answered privately
(an ephemeral JSON answer in the HTTP response) as the caller's platform user."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from incidents.models import EventKind, IncidentStatus
from incidents.services import incident_acknowledge
from oncall.models import ContactKind, ContactMethod, Handoff, Rotation, RotationMember, Schedule
from tests.integrations.conftest import incident_open_for
from tests.integrations.fakes import FakeSlack
from tests.integrations.slack_requests import COMMANDS, command, signed_post, slack_app_serving

OTTO = "U0OTTO"


@pytest.fixture
def slack_app(settings):
    with slack_app_serving(settings) as slack:
        yield slack


def link(user, slack_id: str) -> None:
    ContactMethod.objects.create(user=user, kind=ContactKind.SLACK, value=slack_id, verified_at=timezone.now())


@pytest.fixture
def linked_operator(operator):
    link(operator, OTTO)
    return operator


def on_call(slug: str, *people, team=None) -> Schedule:
    """A schedule whose daily rotation is ``people`` in turn since 1 January (one person: always)."""
    schedule = Schedule.objects.create(name=slug.replace("-", " ").title(), slug=slug, team=team)
    daily = {"handoff": Handoff.DAILY, "handoff_time": dt.time(9), "start_date": dt.date(2026, 1, 1)}
    rotation = Rotation.objects.create(schedule=schedule, name="Primary", **daily)
    for position, user in enumerate(people):
        RotationMember.objects.create(rotation=rotation, user=user, position=position)
    return schedule


def ask(client, slack: FakeSlack, text: str, slack_user: str = OTTO, **kwargs) -> str:
    response = signed_post(client, COMMANDS, command(slack, slack_user, text), **kwargs)
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    return answer["text"]


# --- help -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["help", "", "frobnicate now"])
def test_help_and_anything_unknown_answer_the_help(text, client, slack_app: FakeSlack, db):
    answer = ask(client, slack_app, text, slack_user="U0NOBODY")
    assert answer.startswith("*/etl-monitor*") and "`/etl-monitor ack <incident id>`" in answer
    assert slack_app.calls_to("users.info") == []  # help needs nobody linked


# --- who --------------------------------------------------------------------------------------------------


def test_who_names_the_people_on_call_now_in_every_schedule(client, slack_app: FakeSlack, linked_operator, make_user):
    alice, bob = make_user(username="alice"), make_user(username="bob")
    link(alice, "U0ALICE")
    on_call("data-platform", alice)
    on_call("reporting", bob)
    on_call("nights")

    answer = ask(client, slack_app, "who")

    assert answer.splitlines() == [
        "On call now:",
        "*Data Platform* (`data-platform`): <@U0ALICE>",
        "*Nights* (`nights`): nobody",
        "*Reporting* (`reporting`): bob",
    ]


def test_who_with_a_schedule_names_only_its_people(client, slack_app: FakeSlack, linked_operator, make_user):
    on_call("data-platform", make_user(username="alice"))
    on_call("reporting", make_user(username="bob"))

    assert ask(client, slack_app, "who Reporting") == "On call now:\n*Reporting* (`reporting`): bob"
    assert ask(client, slack_app, "who payroll") == (
        "No schedule named `payroll`. Schedules: `data-platform`, `reporting`."
    )


def test_who_without_schedules_says_so(client, slack_app: FakeSlack, linked_operator):
    assert ask(client, slack_app, "who") == "No on-call schedule exists yet."


# --- mine ---------------------------------------------------------------------------------------------------


def test_mine_lists_what_i_acknowledged_and_the_open_incidents_of_teams_i_am_on_call_for(
    client, slack_app: FakeSlack, linked_operator, new_loader, team, make_user
):
    from loaders.models import Team

    other_team = Team.objects.create(slug="finance", name="Finance", email="fin@example.com")
    ours = incident_open_for(new_loader("SALES-DAILY"))
    acknowledged = incident_open_for(new_loader("ORDERS-HOURLY", owner=other_team.slug))
    incident_acknowledge(user=linked_operator, incident=acknowledged)
    someone_elses = incident_open_for(new_loader("PAYROLL-MONTHLY", owner=other_team.slug))
    on_call("data-platform", linked_operator, team=team)
    on_call("finance", make_user(username="fiona"), team=other_team)

    answer = ask(client, slack_app, "mine")

    lines = answer.splitlines()
    assert lines[0] == "Your incidents:"
    assert sorted(lines[1:]) == sorted(
        [
            f"• <http://127.0.0.1:8000/admin/incidents/incident/{ours.pk}/change/|#{ours.pk}> "
            f"[HIGH] SALES-DAILY failed — Open",
            f"• <http://127.0.0.1:8000/admin/incidents/incident/{acknowledged.pk}/change/|#{acknowledged.pk}> "
            f"[HIGH] ORDERS-HOURLY failed — Acknowledged",
        ]
    )
    assert f"#{someone_elses.pk}>" not in answer


def test_mine_shows_ten_at_most(client, slack_app: FakeSlack, linked_operator, new_loader):
    for number in range(12):
        incident = incident_open_for(new_loader(f"JOB-{number:02d}"))
        incident_acknowledge(user=linked_operator, incident=incident)

    lines = ask(client, slack_app, "mine").splitlines()

    assert len([line for line in lines if line.startswith("• ")]) == 10
    assert lines[-1] == "…and more: the first 10 are shown."


def test_mine_with_nothing_says_so(client, slack_app: FakeSlack, linked_operator):
    assert ask(client, slack_app, "mine").startswith("Nothing is yours")


# --- ack ------------------------------------------------------------------------------------------------------


def test_ack_acknowledges_the_incident_from_slack(client, slack_app: FakeSlack, linked_operator, active_loader):
    incident = incident_open_for(active_loader)

    answer = ask(client, slack_app, f"ack #{incident.pk}")

    assert answer == f"Acknowledged incident #{incident.pk}: SALES-DAILY failed."
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by == linked_operator
    assert incident.events.get(kind=EventKind.ACKNOWLEDGED).data == {"source": "slack"}
    assert ask(client, slack_app, f"ack {incident.pk}") == (
        f"Incident #{incident.pk} is acknowledged; only an open one can be acknowledged."
    )


def test_ack_by_a_viewer_is_refused(client, slack_app: FakeSlack, viewer, active_loader):
    link(viewer, "U0VERA")
    incident = incident_open_for(active_loader)

    assert ask(client, slack_app, f"ack {incident.pk}", slack_user="U0VERA") == (
        "Your role does not allow you to acknowledge incidents."
    )
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN


@pytest.mark.parametrize("text", ["ack", "ack SALES"])
def test_ack_without_an_incident_number_says_how(text, client, slack_app: FakeSlack, linked_operator):
    assert ask(client, slack_app, text) == "Say which incident: `/etl-monitor ack 42`."


def test_ack_of_a_missing_incident_says_so(client, slack_app: FakeSlack, linked_operator):
    assert ask(client, slack_app, "ack 999999") == "There is no incident #999999."


# --- who is asking --------------------------------------------------------------------------------------------


def test_an_unlinked_caller_is_told_how_to_link(client, slack_app: FakeSlack, operator):
    answer = ask(client, slack_app, "mine", slack_user="U0NOBODY")
    assert answer.startswith("Your Slack account is not linked to an ETL Monitor user") and "U0NOBODY" in answer


def test_a_caller_linked_by_email_is_recorded(client, slack_app: FakeSlack, operator):
    operator.email = "otto@example.com"
    operator.save()
    slack_app.user_add(OTTO, "otto@example.com")

    assert ask(client, slack_app, "mine").startswith("Nothing is yours")
    assert ContactMethod.objects.get(kind=ContactKind.SLACK, value=OTTO).user == operator


def test_a_deactivated_user_is_not_linked(client, slack_app: FakeSlack, linked_operator):
    linked_operator.is_active = False
    linked_operator.save()
    assert ask(client, slack_app, "mine").startswith("Your Slack account is not linked")


# --- signatures ------------------------------------------------------------------------------------------------


def test_a_forged_or_stale_command_is_refused(client, slack_app: FakeSlack, linked_operator, active_loader):
    incident = incident_open_for(active_loader)
    fields = command(slack_app, OTTO, f"ack {incident.pk}")

    assert signed_post(client, COMMANDS, fields, secret="forged").status_code == 401
    assert signed_post(client, COMMANDS, fields, at=time.time() - 6 * 60).status_code == 401

    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN
