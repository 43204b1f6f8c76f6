"""Jira with the real ``jira`` client against a local fake Jira (tests/integrations/jira_fake.py).

Each test drives the feature the way production does — detection opens an incident, people
acknowledge, comment and resolve it, Celery (eager here) sends the deliveries, Jira calls the
webhook — and asserts on the tickets the fake Jira holds and on what ETL Monitor recorded.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, EventKind, Incident
from incidents.services import incident_acknowledge, incident_close, incident_comment, incident_resolve
from integrations.jira import creation_label, incident_label
from integrations.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    JiraSettings,
    JiraWebhookReceipt,
    Purpose,
)
from integrations.notifications.channels import channel_configured
from integrations.notifications.outbox import channel_test, deliveries_send, delivery_retry, delivery_send
from loaders.models import Loader
from loaders.services import loader_version_approve, loader_version_submit
from signals_app.models import Signal
from tests.incidents.conftest import add_signals
from tests.integrations.conftest import SIGNAL_FAILURE_RULE
from tests.integrations.jira_fake import FakeJira, serve

WEBHOOK = "/integrations/jira/webhook/"
SECRET = "whsec"
CREATE = "/rest/api/2/issue"  # POST here creates an issue (comments and links have longer paths)
S = dt.timedelta(seconds=1)


@pytest.fixture
def jira(settings: Any, db: Any) -> Iterator[FakeJira]:
    """A fake Jira site with project OPS, and ETL Monitor configured for it. Slack stays off, so
    an incident reaches email (Django's locmem outbox) and Jira only."""
    fake = FakeJira(timeout_delay=3)
    stop = serve(fake)
    settings.JIRA_ENABLED = True
    settings.JIRA_BASE_URL = fake.url
    settings.JIRA_USERNAME = "bot@example.com"
    settings.JIRA_API_TOKEN = "jira-token"
    settings.JIRA_PROJECT = "OPS"
    settings.JIRA_WEBHOOK_SECRET = SECRET
    settings.JIRA_TIMEOUT = 1.0  # the fake holds a stalled create for 3 s
    settings.SLACK_BOT_TOKEN = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    yield fake
    stop()


@pytest.fixture
def fire(jira: FakeJira, active_loader: Loader, django_capture_on_commit_callbacks: Any) -> Callable[..., Incident]:
    """Detection sees failing signals of SALES-DAILY at ``at`` (the seeded HIGH rule, or the
    given one) and acts; the deliveries it makes are sent after commit."""

    def fire_(at: dt.datetime, rule: str = SIGNAL_FAILURE_RULE) -> Incident:
        add_signals(active_loader, failed=3, ok=1, at=at)
        with django_capture_on_commit_callbacks(execute=True):
            rule_evaluate(rule=DetectionRule.objects.get(name=rule), now=at)
        return Incident.objects.filter(loader=active_loader, rule__name=rule).latest("pk")

    return fire_


def breach_ends(at: dt.datetime) -> None:
    """Detection sees the failures gone (out of the rule's window): the next failure is a new breach,
    which reopens an incident resolved by hand (the same breach never does)."""
    rule_evaluate(rule=DetectionRule.objects.get(name=SIGNAL_FAILURE_RULE), now=at)


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    """Run what a person does and then what its commit triggers (the deliveries are sent)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def jira_deliveries(incident: Incident, purpose: str | None = None) -> list[Delivery]:
    deliveries = Delivery.objects.filter(incident=incident, channel__kind=ChannelKind.JIRA).order_by("pk")
    return list(deliveries.filter(purpose=purpose) if purpose else deliveries)


def the_create(incident: Incident) -> Delivery:
    [delivery] = jira_deliveries(incident, Purpose.OPENED)
    return delivery


def creates(fake: FakeJira) -> int:
    """Issue creations Jira received (POST /rest/api/2/issue exactly, not its comment paths)."""
    return len([call for call in fake.calls("POST", CREATE) if call.path == CREATE])


def comment_bodies(fake: FakeJira, key: str) -> list[str]:
    return [comment["body"] for comment in fake.comments(key)]


def status_category(fake: FakeJira, key: str) -> str:
    return fake.issue(key)["fields"]["status"]["statusCategory"]["key"]


def timeline(incident: Incident, kind: str) -> list[str]:
    return list(incident.events.filter(kind=kind).order_by("pk").values_list("message", flat=True))


def post_webhook(
    payload: Any,
    *,
    secret: str | None = SECRET,
    delivery_id: str = "",
    query: str = "",
    raw: bytes | None = None,
) -> Any:
    """POST a webhook as Jira Cloud does: the body signed with ``X-Hub-Signature`` (no header when
    ``secret`` is None) and its delivery identifier."""
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = {"X-Atlassian-Webhook-Identifier": delivery_id} if delivery_id else {}
    if secret is not None:
        headers["X-Hub-Signature"] = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Client().post(WEBHOOK + query, data=body, content_type="application/json", headers=headers)


# --- creating the ticket -----------------------------------------------------------------------------------


def test_a_high_incident_gets_one_ticket_laid_out_as_the_roadmap_says(jira: FakeJira, open_incident, viewer):
    incident = open_incident()

    [issue] = jira.created()
    fields = issue["fields"]
    assert issue["key"] == "OPS-1"
    assert fields["project"]["key"] == "OPS"
    assert fields["summary"] == f"[HIGH] {incident.title}"
    assert fields["issuetype"]["name"] == "Incident"
    assert fields["priority"]["name"] == "High"
    labels = set(fields["labels"])
    assert {"auto-detected", "etl-monitoring", "transaction", f"etlm-incident-{incident.pk}"} <= labels
    [unique] = [label for label in labels if re.fullmatch(r"etlm-[0-9a-f]{20}", label)]
    assert unique == creation_label(the_create(incident))
    description = fields["description"]
    for shown in (
        "*Severity:* HIGH",
        f"*Detected at:* {incident.first_seen.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC",
        "*Affected service:* SALES-DAILY — SALES-DAILY loader",
        "*Category:* TRANSACTION",
        "h3. Description",
        incident.description,
        "h3. Suggested resolution",
        incident.suggestion,
        f"[Incident in ETL Monitor|http://127.0.0.1:8000/admin/incidents/incident/{incident.pk}/change/]",
        "h3. Related metrics",
        "|failed|3|",
        "|total|4|",
    ):
        assert shown in description, shown

    incident.refresh_from_db()
    assert (incident.external_key, incident.external_url) == ("OPS-1", f"{jira.url}/browse/OPS-1")
    delivery = the_create(incident)
    assert (delivery.status, delivery.external_id, delivery.target) == (DeliveryStatus.SENT, "OPS-1", "OPS")
    assert "Opened sent via jira to OPS" in timeline(incident, EventKind.NOTIFIED)
    client = APIClient()
    client.force_authenticate(viewer)
    shown = client.get(f"/api/v1/incidents/{incident.pk}/").json()
    assert (shown["external_key"], shown["external_url"]) == ("OPS-1", f"{jira.url}/browse/OPS-1")


def test_the_correlation_id_goes_to_the_configured_custom_field(jira: FakeJira, fire, active_loader):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(correlation_field="customfield_10050")
    add_signals(active_loader, failed=1, ok=0, at=timezone.now())
    Signal.objects.filter(loader=active_loader).update(correlation_id="corr-7f3a")

    incident = fire(timezone.now(), rule="Run failed")

    assert incident.correlation_id == "corr-7f3a"
    [issue] = jira.created()
    assert issue["fields"]["customfield_10050"] == "corr-7f3a"
    assert "*Correlation id:* {{corr-7f3a}}" in issue["fields"]["description"]


def test_messages_rendered_after_the_ticket_exists_link_to_it(jira: FakeJira, open_incident, operator, committed):
    incident = open_incident()
    with committed():
        incident_resolve(user=operator, incident=incident)

    opened, resolved = [m for m in mail.outbox if "platform-team@company.com" in m.to]
    assert opened.subject == f"[HIGH] {incident.title}"
    assert resolved.subject == f"[HIGH] Resolved: {incident.title}"
    assert f"Jira:      {jira.url}/browse/OPS-1" in resolved.body
    assert f"{jira.url}/browse/OPS-1" in resolved.alternatives[0][0]


@pytest.mark.parametrize("severity", ["MEDIUM", "LOW"])
def test_medium_and_low_incidents_get_no_ticket_by_default(jira: FakeJira, fire, severity):
    DetectionRule.objects.create(
        name=f"failures {severity}", kind="signal_failure_rate", threshold=5.0, severity=severity
    )

    incident = fire(timezone.now(), rule=f"failures {severity}")

    assert incident.severity == severity
    assert jira_deliveries(incident) == []
    assert jira.created() == []
    assert incident.external_key == ""


@pytest.mark.parametrize(("severity", "priority"), [("MEDIUM", "Medium"), ("LOW", "Low")])
def test_the_jira_settings_choose_which_severities_get_a_ticket(jira: FakeJira, fire, severity, priority):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(severities=["CRITICAL", "HIGH", severity])
    DetectionRule.objects.create(
        name=f"failures {severity}", kind="signal_failure_rate", threshold=5.0, severity=severity
    )

    incident = fire(timezone.now(), rule=f"failures {severity}")

    [issue] = jira.created()
    assert issue["fields"]["summary"] == f"[{severity}] {incident.title}"
    assert issue["fields"]["priority"]["name"] == priority
    assert Incident.objects.get(pk=incident.pk).external_key == "OPS-1"


# --- keeping the ticket in step ------------------------------------------------------------------------------


def test_acknowledgement_comments_and_resolution_follow_on_the_ticket(
    jira: FakeJira, open_incident, operator, committed
):
    incident = open_incident()

    with committed():
        incident_acknowledge(user=operator, incident=incident)
    assert comment_bodies(jira, "OPS-1") == ["[ETL Monitor] Acknowledged by otto-operator."]

    with committed():
        incident_comment(user=operator, incident=incident, text="Restarted the extract job")
    assert comment_bodies(jira, "OPS-1")[-1] == "[ETL Monitor] otto-operator commented: Restarted the extract job"
    assert status_category(jira, "OPS-1") == "new"

    with committed():
        incident_resolve(user=operator, incident=incident)
    assert comment_bodies(jira, "OPS-1")[-1] == "[ETL Monitor] Resolved by otto-operator."
    assert jira.issue("OPS-1")["fields"]["status"]["name"] == "Done"
    assert status_category(jira, "OPS-1") == "done"

    with committed():
        incident_close(user=operator, incident=Incident.objects.get(pk=incident.pk))
    assert comment_bodies(jira, "OPS-1")[-1] == "[ETL Monitor] Closed by otto-operator."
    assert status_category(jira, "OPS-1") == "done"  # already done: closing asks no transition

    deliveries = jira_deliveries(incident)
    assert [d.purpose for d in deliveries] == [
        Purpose.OPENED,
        Purpose.ACKNOWLEDGED,
        Purpose.COMMENTED,
        Purpose.RESOLVED,
        Purpose.CLOSED,
    ]
    assert {d.status for d in deliveries} == {DeliveryStatus.SENT}
    assert all(d.root_id == deliveries[0].pk for d in deliveries[1:])
    assert len(jira.created()) == 1
    assert len(comment_bodies(jira, "OPS-1")) == 4
    assert timeline(incident, EventKind.NOTIFY_FAILED) == []


def test_re_fires_comment_on_the_ticket_at_most_every_refire_comment_seconds(jira: FakeJira, fire, settings):
    settings.INCIDENT_REFIRE_EVENT_SECONDS = 60
    t0 = timezone.now()
    incident = fire(t0)

    fire(t0 + 60 * S)
    fire(t0 + 120 * S)  # a second re-fire within the hour (refire_comment_seconds): no comment

    assert len(timeline(incident, EventKind.REFIRED)) == 2
    reminders = [body for body in comment_bodies(jira, "OPS-1") if body.startswith("[ETL Monitor] Still firing")]
    assert len(reminders) == 1
    assert reminders[0].startswith("[ETL Monitor] Still firing: 1 occurrence, last seen ")  # one ongoing breach

    fire(t0 + 3700 * S)  # past the hour: the next re-fire comments again

    assert len(timeline(incident, EventKind.REFIRED)) == 3
    reminders = [body for body in comment_bodies(jira, "OPS-1") if body.startswith("[ETL Monitor] Still firing")]
    assert len(reminders) == 2
    assert reminders[1].startswith("[ETL Monitor] Still firing: 1 occurrence, last seen ")
    assert len(jira.created()) == 1


def test_a_reopen_within_the_window_reopens_the_same_ticket(jira: FakeJira, fire, operator, committed):
    t0 = timezone.now()
    incident = fire(t0)
    with committed():
        incident_resolve(user=operator, incident=incident)
    assert status_category(jira, "OPS-1") == "done"

    breach_ends(t0 + 400 * S)
    reopened = fire(t0 + 420 * S)

    assert reopened.pk == incident.pk and reopened.status == "OPEN"
    assert len(jira.created()) == 1
    assert status_category(jira, "OPS-1") != "done"
    assert comment_bodies(jira, "OPS-1")[-1] == "[ETL Monitor] Reopened: the condition is back."
    [reopen] = jira_deliveries(incident, Purpose.REOPENED)
    assert reopen.status == DeliveryStatus.SENT and reopen.root == the_create(incident)
    assert reopened.external_key == "OPS-1"


def test_a_reopen_after_the_window_makes_a_new_ticket_linked_to_the_old_one(jira: FakeJira, fire, operator, committed):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(reopen_window_seconds=60)
    t0 = timezone.now()
    incident = fire(t0)
    with committed():
        incident_resolve(user=operator, incident=incident)

    breach_ends(t0 + 400 * S)
    reopened = fire(t0 + 420 * S)

    assert reopened.pk == incident.pk
    old, new = jira.created()
    assert (old["key"], new["key"]) == ("OPS-1", "OPS-2")
    assert status_category(jira, "OPS-1") == "done"
    assert new["fields"]["summary"] == f"[HIGH] {incident.title}"
    assert incident_label(incident.pk) in new["fields"]["labels"]
    [link] = jira.links()
    assert link["type"]["name"] == "Relates"
    assert {link["inwardIssue"], link["outwardIssue"]} == {"OPS-1", "OPS-2"}
    assert (reopened.external_key, reopened.external_url) == ("OPS-2", f"{jira.url}/browse/OPS-2")

    with committed():
        incident_resolve(user=operator, incident=reopened)  # follow-ups now go to the new ticket

    assert comment_bodies(jira, "OPS-2") == ["[ETL Monitor] Resolved by otto-operator."]
    assert status_category(jira, "OPS-2") == "done"


# --- the webhook (Jira → ETL Monitor) -------------------------------------------------------------------------


def test_a_webhook_without_the_secret_is_refused_and_changes_nothing(jira: FakeJira, open_incident):
    incident = open_incident()
    jira.set_status("OPS-1", "Done")
    payload = jira.webhook_payload("jira:issue_updated", "OPS-1")

    missing = post_webhook(payload, secret=None)
    wrong = post_webhook(payload, secret="not-the-secret")
    wrong_query = post_webhook(payload, secret=None, query="?secret=not-the-secret")

    assert [r.status_code for r in (missing, wrong, wrong_query)] == [401, 401, 401]
    assert missing.json() == {"detail": "Missing or wrong webhook secret."}
    assert JiraWebhookReceipt.objects.count() == 0
    assert Incident.objects.get(pk=incident.pk).status == "OPEN"


def test_a_ticket_moved_to_done_in_jira_resolves_the_incident_without_an_echo(jira: FakeJira, open_incident):
    incident = open_incident()
    jira_before = len(jira_deliveries(incident))
    jira.set_status("OPS-1", "Done")
    payload = jira.webhook_payload("jira:issue_updated", "OPS-1")

    response = post_webhook(payload, delivery_id="wh-1")

    assert response.status_code == 200
    assert response.json() == {"status": "applied", "reason": "incident resolved"}
    incident.refresh_from_db()
    assert incident.status == "RESOLVED"
    [resolved] = incident.events.filter(kind=EventKind.RESOLVED)
    assert resolved.data == {"source": "jira"}
    assert resolved.message == "Resolved in Jira by Dana Ops (Done)."
    assert resolved.actor.username == "jira"
    assert len(jira_deliveries(incident)) == jira_before  # nothing goes back to Jira
    assert Delivery.objects.filter(incident=incident, channel__name="email", purpose=Purpose.RESOLVED).exists()
    receipt = JiraWebhookReceipt.objects.get()
    assert (receipt.key, receipt.event, receipt.issue_key) == ("wh-1", "jira:issue_updated", "OPS-1")
    assert receipt.outcome == "incident resolved"

    events = incident.events.count()
    again = post_webhook(payload, delivery_id="wh-1")

    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert incident.events.count() == events
    assert JiraWebhookReceipt.objects.count() == 1
    assert len(jira_deliveries(incident)) == jira_before


def test_a_comment_written_in_jira_appears_on_the_timeline(jira: FakeJira, open_incident):
    incident = open_incident()
    jira_before = len(jira_deliveries(incident))
    jira.add_comment("OPS-1", "The source DB was restarted at 12:05")
    payload = jira.webhook_payload("comment_created", "OPS-1")

    response = post_webhook(payload, secret=None, query=f"?secret={SECRET}")  # Jira Data Center style

    assert response.status_code == 200
    assert response.json() == {"status": "applied", "reason": "comment added to the timeline"}
    [comment] = incident.events.filter(kind=EventKind.COMMENTED)
    assert comment.message == "Dana Ops in Jira: The source DB was restarted at 12:05"
    assert comment.data == {"source": "jira"}
    assert len(jira_deliveries(incident)) == jira_before
    assert comment_bodies(jira, "OPS-1") == ["The source DB was restarted at 12:05"]


def test_our_own_comment_echoed_back_by_jira_is_ignored(jira: FakeJira, open_incident, operator, committed):
    incident = open_incident()
    with committed():
        incident_acknowledge(user=operator, incident=incident)
    [ours] = jira.comments("OPS-1")
    payload = jira.webhook_payload("comment_created", "OPS-1", comment_id=ours["id"])

    response = post_webhook(payload, delivery_id="wh-echo")

    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "our own comment echoed back"}
    assert incident.events.filter(kind=EventKind.COMMENTED).count() == 0
    assert len(comment_bodies(jira, "OPS-1")) == 1


def test_our_own_transitions_echoed_back_by_jira_change_nothing(jira: FakeJira, fire, operator, committed):
    t0 = timezone.now()
    incident = fire(t0)
    with committed():
        incident_resolve(user=operator, incident=incident)
    done_echo = jira.webhook_payload("jira:issue_updated", "OPS-1", user=jira.bot)  # our move to Done
    breach_ends(t0 + 400 * S)
    incident = fire(t0 + 420 * S)  # detection reopens it before Jira's webhook for that move arrives
    reopen_echo = jira.webhook_payload("jira:issue_updated", "OPS-1", user=jira.bot)
    events = incident.events.count()

    late = post_webhook(done_echo, delivery_id="wh-done")
    reopened = post_webhook(reopen_echo, delivery_id="wh-reopen")

    assert late.json() == reopened.json() == {"status": "ignored", "reason": "our own change echoed back"}
    incident.refresh_from_db()
    assert incident.status == "OPEN"
    assert incident.events.count() == events
    assert JiraWebhookReceipt.objects.count() == 2


def test_a_webhook_about_an_unknown_ticket_is_ignored(jira: FakeJira, open_incident):
    open_incident()
    jira.add_comment("OPS-1", "hello")
    payload = jira.webhook_payload("comment_created", "OPS-1")
    payload["issue"]["key"] = "OPS-99"

    response = post_webhook(payload)

    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "reason": "no incident has ticket OPS-99"}
    assert Incident.objects.get().events.filter(kind=EventKind.COMMENTED).count() == 0


def test_a_webhook_body_that_is_not_json_is_a_bad_request(jira: FakeJira):
    response = post_webhook(None, raw=b"not json {")

    assert response.status_code == 400
    assert response.json() == {"detail": "The body is not JSON."}
    assert JiraWebhookReceipt.objects.count() == 0


def test_the_webhook_is_not_there_without_a_webhook_secret(jira: FakeJira, settings):
    settings.JIRA_WEBHOOK_SECRET = ""

    response = post_webhook({"webhookEvent": "comment_created"}, secret="")

    assert response.status_code == 404
    assert JiraWebhookReceipt.objects.count() == 0


# --- failures ----------------------------------------------------------------------------------------------------


def test_a_rate_limited_create_waits_retry_after_and_then_makes_one_ticket(jira: FakeJira, open_incident):
    jira.fail_next(1, 429, retry_after=30, method="POST", path=CREATE)
    before = timezone.now()

    incident = open_incident()

    delivery = the_create(incident)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "rate limit" in delivery.last_error
    assert delivery.next_attempt_at >= before + 30 * S
    assert jira.created() == []

    delivery_send(delivery.pk, now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.external_id) == (DeliveryStatus.SENT, 2, "OPS-1")
    assert len(jira.issues_with_label(incident_label(incident.pk))) == 1
    assert Incident.objects.get(pk=incident.pk).external_key == "OPS-1"


def test_after_a_429_the_rest_of_the_batch_waits_instead_of_adding_to_the_limit(
    jira: FakeJira, fire, active_loader, new_loader, editor, approver
):
    other = new_loader("INVOICES-DAILY")
    loader_version_approve(user=approver, version=loader_version_submit(user=editor, version=other.open_version))
    add_signals(other, failed=3, ok=1, at=timezone.now())
    jira.fail_next(1, 429, retry_after=30, method="POST", path=CREATE)
    before = timezone.now()

    fire(timezone.now())  # one detection cycle opens both incidents: one batch of deliveries

    incidents = list(Incident.objects.filter(rule__name=SIGNAL_FAILURE_RULE).order_by("pk"))
    assert len(incidents) == 2
    limited, held = waiting = [the_create(incident) for incident in incidents]
    assert (limited.status, limited.attempts) == (DeliveryStatus.FAILED, 1)
    assert limited.last_error == "Jira rate limit while creating the ticket"
    assert (held.status, held.attempts) == (DeliveryStatus.PENDING, 0)  # never tried: no attempt used
    assert held.last_error == "deferred: Jira rate limit while creating the ticket"
    assert all(d.next_attempt_at >= before + 30 * S for d in waiting)
    assert creates(jira) == 1  # the second create was not tried

    deliveries_send([d.pk for d in waiting], now=max(d.next_attempt_at for d in waiting))

    assert {Delivery.objects.get(pk=d.pk).status for d in waiting} == {DeliveryStatus.SENT}
    assert creates(jira) == 3
    for incident in incidents:
        assert len(jira.issues_with_label(incident_label(incident.pk))) == 1


def test_a_create_that_timed_out_after_jira_stored_it_is_found_not_made_again(jira: FakeJira, open_incident):
    jira.time_out_next_creates(1)

    incident = open_incident()

    delivery = the_create(incident)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
    assert "Jira unreachable while creating the ticket" in delivery.last_error
    label = creation_label(delivery)
    assert [issue["key"] for issue in jira.issues_with_label(label)] == ["OPS-1"]  # Jira has it
    assert creates(jira) == 1

    delivery_send(delivery.pk, now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.external_id) == (DeliveryStatus.SENT, 2, "OPS-1")
    assert creates(jira) == 1  # the retry looked the ticket up by its label instead
    assert jira.calls(path="/rest/api/2/search/jql")
    assert len(jira.issues_with_label(label)) == 1
    assert len(jira.issues_with_label(incident_label(incident.pk))) == 1
    incident.refresh_from_db()
    assert (incident.external_key, incident.external_url) == ("OPS-1", f"{jira.url}/browse/OPS-1")


def test_a_manual_retry_after_a_timed_out_create_finds_the_ticket_too(
    jira: FakeJira, open_incident, admin_user, committed
):
    jira.time_out_next_creates(1)
    incident = open_incident()
    delivery = the_create(incident)
    assert delivery.status == DeliveryStatus.FAILED

    with committed():
        delivery_retry(user=admin_user, delivery=delivery)  # an admin does not wait for the backoff

    delivery.refresh_from_db()
    assert (delivery.status, delivery.external_id) == (DeliveryStatus.SENT, "OPS-1")
    assert creates(jira) == 1
    assert len(jira.issues_with_label(incident_label(incident.pk))) == 1


def test_a_follow_up_of_a_ticket_never_created_gives_up_without_blaming_the_channel(
    jira: FakeJira, open_incident, operator, admin_user, committed, settings
):
    admin_user.email = "ada@example.com"
    admin_user.save()
    settings.NOTIFY_MAX_ATTEMPTS = 2
    jira.fail_next(2, 503, method="POST", path=CREATE)  # Jira is down for a while
    incident = open_incident()
    create = the_create(incident)
    with committed():
        incident_acknowledge(user=operator, incident=incident)
    [ack] = jira_deliveries(incident, Purpose.ACKNOWLEDGED)
    assert (ack.status, ack.attempts) == (DeliveryStatus.PENDING, 0)  # waits for its ticket

    delivery_send(create.pk, now=create.next_attempt_at)
    create.refresh_from_db()
    assert create.status == DeliveryStatus.GAVE_UP and "Jira 503 while creating the ticket" in create.last_error
    ack.refresh_from_db()
    delivery_send(ack.pk, now=ack.next_attempt_at)

    ack.refresh_from_db()
    assert ack.status == DeliveryStatus.GAVE_UP
    assert ack.last_error == "no ticket to update (its creation failed)"
    channel = Channel.objects.get(name="jira")
    assert channel.healthy and channel.unhealthy_reason == ""  # Jira works again: nothing to fix there
    assert [m for m in mail.outbox if m.to == ["ada@example.com"]] == []
    assert jira.created() == []


def test_a_wrong_api_token_gives_up_at_once_and_tells_the_admins(jira: FakeJira, open_incident, admin_user, settings):
    admin_user.email = "ada@example.com"
    admin_user.save()
    settings.JIRA_API_TOKEN = "bad"

    incident = open_incident()

    delivery = the_create(incident)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.GAVE_UP, 1)
    assert "Jira refused the credentials (401)" in delivery.last_error
    channel = Channel.objects.get(name="jira")
    assert not channel.healthy and "JIRA_API_TOKEN" in channel.unhealthy_reason
    [alert] = [m for m in mail.outbox if m.to == ["ada@example.com"]]
    assert alert.subject == "[ETL Monitor] Notification channel jira is not working"
    assert "Jira refused the credentials (401)" in alert.body
    [failed] = timeline(incident, EventKind.NOTIFY_FAILED)
    assert failed.startswith("Opened via jira to OPS failed: Jira refused the credentials (401)")
    assert jira.created() == []


def test_an_unknown_project_gives_up_naming_the_problem(jira: FakeJira, open_incident, settings):
    settings.JIRA_PROJECT = "NOPE"

    incident = open_incident()

    delivery = the_create(incident)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.GAVE_UP, 1)
    assert "Jira 400 while creating the ticket" in delivery.last_error
    assert "Specify a valid project ID or key" in delivery.last_error
    assert not Channel.objects.get(name="jira").healthy
    assert jira.created() == []


def test_a_retry_after_the_settings_are_fixed_uses_the_fixed_settings(
    jira: FakeJira, open_incident, admin_user, settings, django_capture_on_commit_callbacks
):
    """The ticket's text is the incident as it was; the project, issue type, priorities and
    labels are the settings as they are when the retry runs."""
    settings.JIRA_PROJECT = "NOPE"
    incident = open_incident()
    delivery = the_create(incident)
    assert delivery.status == DeliveryStatus.GAVE_UP and "Specify a valid project ID or key" in delivery.last_error
    Incident.objects.filter(pk=incident.pk).update(title="renamed since")  # a fact: the ticket keeps the old one

    settings.JIRA_PROJECT = "OPS"
    conf = JiraSettings.current()
    conf.issue_type, conf.labels, conf.priorities = "Task", ["etl-monitoring", "fixed"], {"HIGH": "Highest"}
    conf.save()
    with django_capture_on_commit_callbacks(execute=True):
        delivery_retry(user=admin_user, delivery=delivery)

    [issue] = jira.created()
    fields = issue["fields"]
    assert fields["project"]["key"] == "OPS" and fields["issuetype"]["name"] == "Task"
    assert fields["priority"]["name"] == "Highest"
    assert {"etl-monitoring", "fixed", incident_label(incident.pk)} <= set(fields["labels"])
    assert "auto-detected" not in fields["labels"]
    assert fields["summary"] == f"[HIGH] {incident.title}"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.external_id == issue["key"]


def test_an_automatic_retry_takes_the_settings_as_they_are_then(jira: FakeJira, open_incident):
    jira.fail_next(1, 503, method="POST", path=CREATE)
    incident = open_incident()
    delivery = the_create(incident)
    assert delivery.status == DeliveryStatus.FAILED

    conf = JiraSettings.current()
    conf.issue_type = "Task"
    conf.save()
    delivery_send(delivery.pk, now=delivery.next_attempt_at)

    [issue] = jira.created()
    assert issue["fields"]["issuetype"]["name"] == "Task"


def test_a_follow_up_takes_the_transition_as_it_is_when_sent(jira: FakeJira, fire, operator, admin_user, committed):
    incident = fire(timezone.now())
    [issue] = jira.created()
    conf = JiraSettings.current()
    conf.done_transition = "Nope"
    conf.save()
    with committed():
        incident_resolve(user=operator, incident=incident, comment="fixed")
    [done] = jira_deliveries(incident, Purpose.RESOLVED)
    assert done.status == DeliveryStatus.GAVE_UP and "no transition 'Nope'" in done.last_error

    conf.done_transition = "Done"
    conf.save()
    with committed():
        delivery_retry(user=admin_user, delivery=done)

    assert status_category(jira, issue["key"]) == "done"


# --- test connection -------------------------------------------------------------------------------------------


def connection_messages(admin_user: Any) -> list[tuple[str, str]]:
    """Press "Test connection" on the Jira settings page: the messages shown, with their level."""
    client = Client()
    client.force_login(admin_user)
    response = client.post(reverse("admin:integrations_jirasettings_test"), follow=True)
    assert response.status_code == 200
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def test_the_admin_test_connection_reports_each_check_passing(jira: FakeJira, admin_user):
    assert connection_messages(admin_user) == [
        ("success", f"configuration: {jira.url}, project OPS"),
        ("success", "server: Fake Jira 1001.0.0-SNAPSHOT"),
        ("success", "credentials: signed in as ETL Monitor Bot"),
        ("success", "project: OPS — OPS project"),
        ("success", "issue type: Incident"),
        ("success", "transitions: no ticket yet to check them on; they are looked up per ticket by name"),
    ]


def test_the_admin_test_connection_checks_the_fields_and_transitions_once_tickets_exist(
    jira: FakeJira, open_incident, admin_user
):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(correlation_field="customfield_10050")
    open_incident()

    shown = connection_messages(admin_user)

    assert ("success", "correlation field: customfield_10050") in shown
    assert ("success", "done transition: 'Done' on OPS-1") in shown
    assert {level for level, _ in shown} == {"success"}


@pytest.mark.parametrize(
    ("failing", "check"),
    [("/rest/api/2/field", "correlation field"), ("/rest/api/2/issue/OPS-1/transitions", "done transition")],
)
def test_the_admin_test_connection_reports_a_jira_error_in_a_later_check(
    jira: FakeJira, open_incident, admin_user, failing, check
):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(correlation_field="customfield_10050")
    open_incident()
    jira.fail_next(1, 500, method="GET", path=failing)

    shown = connection_messages(admin_user)

    [(level, message)] = [(level, message) for level, message in shown if message.startswith(f"{check}: ")]
    assert level == "error"
    assert "Jira 500" in message
    assert ("success", "issue type: Incident") in shown


def test_the_admin_test_connection_names_a_wrong_issue_type_and_the_available_ones(jira: FakeJira, admin_user):
    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(issue_type="Bug")

    shown = connection_messages(admin_user)

    assert ("error", "issue type: 'Bug' is not an issue type of OPS: ['Incident', 'Task']") in shown
    assert ("success", "credentials: signed in as ETL Monitor Bot") in shown


def test_the_admin_test_connection_reports_refused_credentials(jira: FakeJira, admin_user, settings):
    settings.JIRA_API_TOKEN = "bad"

    shown = connection_messages(admin_user)

    assert shown == [
        ("success", f"configuration: {jira.url}, project OPS"),
        (
            "error",
            "server and credentials: Jira refused the credentials (401) while signing in: "
            "check JIRA_USERNAME/JIRA_API_TOKEN",
        ),
    ]


# --- signing in: basic (Jira Cloud) or a personal access token (Jira Data Center) ----------------------

PAT = "pat-never-show-me-0123456789"


def authorizations(fake: FakeJira) -> set[str]:
    return {call.authorization for call in fake.calls()}


@pytest.fixture
def data_center(jira: FakeJira, settings: Any) -> FakeJira:
    """The fake Jira takes the personal access token; ETL Monitor signs in with JIRA_AUTH=token."""
    jira.personal_access_token = PAT
    settings.JIRA_AUTH = "token"
    settings.JIRA_USERNAME = settings.JIRA_API_TOKEN = ""
    return jira


def test_basic_sign_in_sends_the_email_and_the_api_token(jira: FakeJira, open_incident):
    incident = open_incident()

    assert the_create(incident).status == DeliveryStatus.SENT
    assert authorizations(jira) == {"Basic " + base64.b64encode(b"bot@example.com:jira-token").decode()}


def test_a_personal_access_token_is_sent_as_a_bearer_token(data_center: FakeJira, open_incident, settings, caplog):
    settings.JIRA_PERSONAL_ACCESS_TOKEN = PAT
    caplog.set_level(logging.DEBUG)

    incident = open_incident()

    assert the_create(incident).status == DeliveryStatus.SENT and len(data_center.created()) == 1
    assert authorizations(data_center) == {f"Bearer {PAT}"}
    assert PAT not in caplog.text


def test_the_jira_channel_holds_the_token_encrypted_write_only_and_before_the_environment(
    data_center: FakeJira, open_incident, settings, admin_user
):
    settings.JIRA_PERSONAL_ACCESS_TOKEN = "an-older-token"
    channel = Channel.objects.get(name="jira")
    client = Client()
    client.force_login(admin_user)
    saved = client.post(
        f"/admin/integrations/channel/{channel.pk}/change/",
        {"name": "jira", "kind": "JIRA", "enabled": "on", "url": "", "secret": PAT},
    )
    assert saved.status_code == 302
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM integrations_channel WHERE id = %s", [channel.pk])
        [stored] = cursor.fetchone()
    assert stored and PAT not in stored  # encrypted at rest

    incident = open_incident()

    assert the_create(incident).status == DeliveryStatus.SENT
    assert authorizations(data_center) == {f"Bearer {PAT}"}
    for url in (
        reverse("admin:integrations_jirasettings_change", args=[JiraSettings.current().pk]),
        f"/admin/integrations/channel/{channel.pk}/change/",
        f"/admin/integrations/channel/{channel.pk}/history/",
    ):
        page = client.get(url).content.decode()
        assert PAT not in page
    settings_page = client.get(reverse("admin:integrations_jirasettings_change", args=[JiraSettings.current().pk]))
    assert "personal access token (Bearer) · token set (jira channel)" in settings_page.content.decode()
    api = APIClient()
    api.force_authenticate(admin_user)
    assert PAT not in api.get("/api/v1/channels/jira/").content.decode()


def test_token_sign_in_without_a_token_says_so_and_calls_nothing(data_center: FakeJira, open_incident, admin_user):
    missing = (
        "not set: a personal access token for JIRA_AUTH=token (JIRA_PERSONAL_ACCESS_TOKEN or the jira channel's secret)"
    )

    assert connection_messages(admin_user) == [("error", f"configuration: {missing}")]
    assert channel_configured(Channel.objects.get(name="jira")) == missing
    incident = open_incident()

    assert jira_deliveries(incident) == [] and data_center.calls() == []


def test_basic_sign_in_without_its_api_token_says_so(jira: FakeJira, admin_user, settings):
    settings.JIRA_API_TOKEN = ""
    assert connection_messages(admin_user) == [("error", "configuration: not set: JIRA_API_TOKEN")]
    settings.JIRA_AUTH = "bearer"
    assert connection_messages(admin_user) == [
        ("error", "configuration: JIRA_AUTH is 'bearer': use basic (Jira Cloud) or token (Jira Data Center)")
    ]
    assert jira.calls() == []


def test_a_refused_personal_access_token_gives_up_naming_where_it_comes_from(
    data_center: FakeJira, open_incident, settings
):
    settings.JIRA_PERSONAL_ACCESS_TOKEN = "revoked"

    incident = open_incident()

    delivery = the_create(incident)
    assert delivery.status == DeliveryStatus.GAVE_UP
    assert "Jira refused the credentials (401)" in delivery.last_error
    assert (
        "check the personal access token (JIRA_PERSONAL_ACCESS_TOKEN or the jira channel's secret)"
        in delivery.last_error
    )
    assert "revoked" not in delivery.last_error


def test_the_jira_channel_test_notification_runs_the_same_checks(jira: FakeJira, admin_user):
    channel = Channel.objects.get(name="jira")

    ok = channel_test(user=admin_user, channel=channel)

    assert (ok.status, ok.external_id, ok.target, ok.purpose) == (DeliveryStatus.SENT, "check:ok", "OPS", Purpose.TEST)
    assert jira.created() == []

    JiraSettings.objects.filter(pk=JiraSettings.current().pk).update(issue_type="Bug")
    failed = channel_test(user=admin_user, channel=channel)

    failed.refresh_from_db()
    assert failed.status == DeliveryStatus.GAVE_UP
    assert failed.last_error == "issue type: 'Bug' is not an issue type of OPS: ['Incident', 'Task']"


def test_the_jira_settings_page_renders_with_its_test_button(jira: FakeJira, admin_user):
    client = Client()
    client.force_login(admin_user)

    listed = client.get(reverse("admin:integrations_jirasettings_changelist"))
    page = client.get(reverse("admin:integrations_jirasettings_change", args=[JiraSettings.current().pk]))

    assert listed.status_code == 302 and listed.url == page.request["PATH_INFO"]
    assert page.status_code == 200
    content = page.content.decode()
    assert "Test connection" in content
    assert reverse("admin:integrations_jirasettings_test") in content
    assert f"URL {jira.url}" in content


def test_the_first_slack_message_gets_its_view_jira_button_once_the_ticket_exists(
    jira: FakeJira, httpserver: Any, settings: Any, active_loader: Loader, django_capture_on_commit_callbacks: Any
) -> None:
    from tests.integrations.conftest import FakeSlack

    settings.SLACK_BOT_TOKEN = FakeSlack.TOKEN
    settings.SLACK_API_BASE_URL = httpserver.url_for("/api/")
    slack = FakeSlack(httpserver)
    now = timezone.now()
    add_signals(active_loader, failed=3, ok=1, at=now)
    with django_capture_on_commit_callbacks(execute=True):
        rule_evaluate(rule=DetectionRule.objects.get(name=SIGNAL_FAILURE_RULE), now=now)
    incident = Incident.objects.get(loader=active_loader)
    assert incident.external_key == "OPS-1"
    [post] = slack.posts("#alerts-high")
    buttons = [e for b in post["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert {"text": "View Jira", "url": f"{jira.url}/browse/OPS-1"} in [
        {"text": b["text"]["text"], "url": b["url"]} for b in buttons
    ]
    assert slack.replies(post) == []  # updated in place, nothing added to its thread
    refresh = Delivery.objects.get(incident=incident, purpose="UPDATED")
    assert refresh.status == "SENT" and refresh.root.purpose == "OPENED"
