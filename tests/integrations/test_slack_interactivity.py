"""The incident message's buttons in Slack: a signed click acts through the services as the clicker's
platform user, and the message is updated in place by the outbox (chat.update at the fake Slack).

Detection opens a HIGH incident, routed to #alerts-high; Celery is eager, and each click runs in
``django_capture_on_commit_callbacks(execute=True)`` so the follow-up delivery it queues is sent as
a worker would send it after the commit."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import pytest
from django.utils import timezone

from incidents.models import EventKind, IncidentStatus, Silence
from incidents.services import incident_acknowledge
from integrations.models import NotificationRule
from oncall.models import ContactKind, ContactMethod
from tests.integrations.fakes import FakeSlack
from tests.integrations.slack_requests import INTERACTIVITY, click, signed_post, slack_app_serving

OTTO = "U0OTTO"


@pytest.fixture
def slack_app(settings):
    with slack_app_serving(settings) as slack:
        yield slack


@pytest.fixture
def linked_operator(operator):
    ContactMethod.objects.create(user=operator, kind=ContactKind.SLACK, value=OTTO, verified_at=timezone.now())
    return operator


def action_ids(message: dict) -> list[str]:
    return [e.get("action_id") for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


def press(client, slack: FakeSlack, capture, slack_user: str, action_id: str, incident, **kwargs):
    with capture(execute=True):
        return signed_post(client, INTERACTIVITY, click(slack, slack_user, action_id, incident.pk), **kwargs)


def test_it_acknowledges_from_the_button_and_updates_the_message_in_place(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()
    [post] = slack_app.posts()
    assert action_ids(post) == ["etl_ack", "etl_resolve", "etl_escalate", "etl_silence_1h", "open_incident"]

    response = press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident)

    assert response.status_code == 200 and response.content == b""
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by == linked_operator
    assert incident.events.get(kind=EventKind.ACKNOWLEDGED).data == {"source": "slack"}
    [update] = slack_app.calls_to("chat.update")
    assert update.body["ts"] == post["ts"] and update.body["channel"] == "C0HIGH"
    [post] = slack_app.posts()  # still one message: updated, not posted again
    shown = json.dumps(post["blocks"], ensure_ascii=False)
    assert post.get("edited") and "Acknowledged by otto-operator at " in shown and "*Acknowledged*" in shown
    assert action_ids(post) == ["etl_resolve", "etl_silence_1h", "open_incident"]
    assert slack_app.responses == []  # the update says it all: nothing ephemeral


def test_it_resolves_and_the_message_keeps_only_its_links(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_resolve", incident)

    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_by == linked_operator
    assert incident.events.get(kind=EventKind.RESOLVED).data == {"source": "slack"}
    [post] = slack_app.posts()
    assert "Resolved by otto-operator at " in json.dumps(post["blocks"]) and post.get("edited")
    assert action_ids(post) == ["open_incident"]


def test_it_escalates_to_the_next_tier_and_says_so_to_the_clicker(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    NotificationRule.objects.filter(severity="HIGH", team=None, tag=None).update(
        escalation_tiers=[{"channels": ["slack"], "slack_channel": "#alerts-high"}], escalation_repeat=0
    )
    incident = open_incident()

    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_escalate", incident)

    event = incident.events.get(kind=EventKind.ESCALATED)
    assert event.actor == linked_operator and event.message == "Escalated by otto-operator from slack: tier 1 notified."
    assert len(slack_app.posts()) == 1
    replies = [m["text"] for m in slack_app.messages if "thread_ts" in m]  # in the first message's thread
    assert replies == ["Escalated by otto-operator."]
    [answer] = slack_app.responses
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"] == f"Escalated incident #{incident.pk}: tier 1 of its notification rule is notified."


def test_silence_one_hour_silences_the_loader_from_now(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()
    before = timezone.now()

    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_silence_1h", incident)

    silence = Silence.objects.get()
    assert silence.loader == incident.loader and silence.created_by == linked_operator
    assert dt.timedelta(minutes=59) < silence.ends_at - before <= dt.timedelta(hours=1, seconds=5)
    [answer] = slack_app.responses
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith(f"Silenced SALES-DAILY until {silence.ends_at.astimezone(dt.UTC):%H:%M} UTC")
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN  # silencing does not acknowledge


def test_an_already_acknowledged_incident_is_said_so_to_the_clicker_alone(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()
    incident_acknowledge(user=linked_operator, incident=incident)

    response = press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident)

    assert response.status_code == 200
    [answer] = slack_app.responses
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == f"Incident #{incident.pk} is acknowledged; only an open one can be acknowledged."
    assert incident.events.filter(kind=EventKind.ACKNOWLEDGED).count() == 1


def test_a_viewer_is_refused_ephemerally_and_nothing_changes(
    client, open_incident, slack_app: FakeSlack, viewer, django_capture_on_commit_callbacks
):
    ContactMethod.objects.create(user=viewer, kind=ContactKind.SLACK, value="U0VERA", verified_at=timezone.now())
    incident = open_incident()

    for action in ("etl_ack", "etl_resolve", "etl_escalate", "etl_silence_1h"):
        press(client, slack_app, django_capture_on_commit_callbacks, "U0VERA", action, incident)

    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN and not Silence.objects.exists()
    assert [r["text"] for r in slack_app.responses] == [
        "Your role does not allow you to acknowledge incidents.",
        "Your role does not allow you to resolve incidents.",
        "Your role does not allow you to escalate incidents.",
        "Your role does not allow you to manage silences.",
    ]
    assert slack_app.calls_to("chat.update") == []


def test_an_unknown_slack_user_is_told_how_to_link_and_nothing_changes(
    client, open_incident, slack_app: FakeSlack, operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    press(client, slack_app, django_capture_on_commit_callbacks, "U0NOBODY", "etl_ack", incident)

    [lookup] = slack_app.calls_to("users.info")
    assert lookup.body["user"] == "U0NOBODY"
    [answer] = slack_app.responses
    assert answer["response_type"] == "ephemeral"
    assert answer["text"].startswith("Your Slack account is not linked to an ETL Monitor user")
    assert "U0NOBODY" in answer["text"]
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN


def test_a_slack_email_of_one_user_links_the_account_so_the_next_click_asks_slack_nothing(
    client, open_incident, slack_app: FakeSlack, operator, django_capture_on_commit_callbacks
):
    operator.email = "otto@example.com"
    operator.save()
    slack_app.user_add(OTTO, "Otto@Example.COM")
    incident = open_incident()

    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident)
    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_resolve", incident)

    incident.refresh_from_db()
    assert incident.status == IncidentStatus.RESOLVED and incident.acknowledged_by == operator
    link = ContactMethod.objects.get(kind=ContactKind.SLACK, value=OTTO)
    assert link.user == operator and link.verified_at is not None
    assert len(slack_app.calls_to("users.info")) == 1


def test_an_email_shared_by_two_users_links_nobody(
    client, open_incident, slack_app: FakeSlack, operator, make_user, django_capture_on_commit_callbacks
):
    operator.email = "oncall@example.com"
    operator.save()
    make_user("Operator", username="olga-operator", email="ONCALL@example.com")
    slack_app.user_add(OTTO, "oncall@example.com")
    incident = open_incident()

    press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident)

    assert slack_app.responses[0]["text"].startswith("Your Slack account is not linked")
    assert not ContactMethod.objects.filter(kind=ContactKind.SLACK).exists()
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN


def test_a_forged_signature_is_refused_and_logged_without_the_body(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks, caplog
):
    incident = open_incident()

    with caplog.at_level(logging.WARNING, logger="integrations.slack_app"):
        response = press(
            client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident, secret="not-the-secret"
        )

    assert response.status_code == 401
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN and slack_app.responses == []
    [record] = [r for r in caplog.records if r.name == "integrations.slack_app"]
    assert "wrong signature" in record.getMessage() and "etl_ack" not in record.getMessage()


@pytest.mark.parametrize("offset", [-6 * 60, 6 * 60])
def test_a_correctly_signed_request_outside_five_minutes_is_refused(
    offset, client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    response = press(
        client, slack_app, django_capture_on_commit_callbacks, OTTO, "etl_ack", incident, at=time.time() + offset
    )

    assert response.status_code == 401
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN


def test_a_request_without_signature_headers_is_refused(client, slack_app: FakeSlack, db):
    response = client.post(INTERACTIVITY, data="payload=%7B%7D", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401


def test_the_endpoints_are_off_without_a_signing_secret(client, slack_app: FakeSlack, settings, db):
    settings.SLACK_SIGNING_SECRET = ""
    for path in (INTERACTIVITY, "/integrations/slack/commands/"):
        assert signed_post(client, path, {"payload": "{}", "text": "help"}).status_code == 404


def test_a_click_on_a_link_button_changes_nothing(
    client, open_incident, slack_app: FakeSlack, linked_operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    response = press(client, slack_app, django_capture_on_commit_callbacks, OTTO, "open_incident", incident)

    assert response.status_code == 200
    incident.refresh_from_db()
    assert incident.status == IncidentStatus.OPEN and slack_app.responses == []


def test_a_signed_request_that_is_not_an_interaction_is_refused(client, slack_app: FakeSlack, db):
    response = signed_post(client, INTERACTIVITY, {"payload": "not json"})
    assert response.status_code == 400


def test_a_response_url_off_slack_is_not_posted_to(
    client, open_incident, slack_app: FakeSlack, django_capture_on_commit_callbacks, operator
):
    incident = open_incident()
    fields = click(slack_app, "U0NOBODY", "etl_ack", incident.pk)
    payload = json.loads(fields["payload"])
    payload["response_url"] = "http://169.254.169.254/latest/meta-data"
    response = signed_post(client, INTERACTIVITY, {"payload": json.dumps(payload)})
    assert response.status_code == 200 and slack_app.responses == []
