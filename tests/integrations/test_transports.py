"""The transports with their real clients (smtplib, slack_sdk, requests) against local servers.

Each test drives the feature the way production does — detection opens an incident, people
acknowledge and resolve it, Celery (eager here) sends the deliveries — and asserts on what the
receiving server got and on the deliveries' recorded state.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from email.message import EmailMessage

import pytest
from django.utils import timezone

from etl_monitor.models import FieldProtection
from incidents.models import EventKind, Incident
from incidents.services import incident_acknowledge, incident_resolve
from integrations.models import Channel, ChannelKind, Delivery, DeliveryStatus, NotificationRule, Purpose
from integrations.notifications.channels import channel_save
from integrations.notifications.outbox import channel_test, deliveries_recover, delivery_retry, delivery_send
from integrations.notifications.routing import escalations_run
from integrations.notifications.transports import transport_for
from loaders.models import Loader, Team
from tests.integrations.conftest import FakeSlack, WebhookReceiver
from tests.mailbox import Mailbox
from tests.net import free_port

ONCALL = "platform-team@company.com"  # the seeded HIGH rule's recipient


def delivery_of(incident: Incident, kind: str, purpose: str = Purpose.OPENED) -> Delivery:
    return Delivery.objects.get(incident=incident, channel__kind=kind, purpose=purpose)


def send_again(delivery: Delivery) -> Delivery:
    """The retry Celery would run once the delivery's backoff has passed."""
    delivery.refresh_from_db()
    delivery_send(delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    return delivery


def route_to(team: Team, *channels: str) -> NotificationRule:
    """The team's own HIGH rule (it wins over the seeded one)."""
    return NotificationRule.objects.create(
        severity="HIGH", team=team, channels=list(channels), recipients=[ONCALL], slack_channel="#alerts-high"
    )


def text_of(message: EmailMessage) -> str:
    """Everything a reader of the email sees: headers and every decoded part."""
    parts = [part.get_content() for part in message.walk() if not part.is_multipart()]
    return "\n".join([str(message), *parts])


def timeline(incident: Incident, kind: str) -> list[str]:
    return list(incident.events.filter(kind=kind).values_list("message", flat=True))


# --- email -------------------------------------------------------------------------------------------


def test_an_opened_incident_is_emailed_with_a_text_and_an_html_part(open_incident, mailbox: Mailbox, slack):
    incident = open_incident()

    [message] = mailbox.to(ONCALL)
    delivery = delivery_of(incident, ChannelKind.EMAIL)
    assert message["Subject"] == f"[HIGH] {incident.title}"
    assert message["Message-ID"] == delivery.external_id
    assert delivery.key_digest in message["Message-ID"]
    assert delivery.status == DeliveryStatus.SENT
    link = f"http://127.0.0.1:8000/admin/incidents/incident/{incident.pk}/change/"
    for content_type in ("plain", "html"):
        body = message.get_body(preferencelist=(content_type,))
        assert body.get_content_type() == f"text/{content_type}"
        content = html.unescape(body.get_content())
        for shown in ("HIGH", "SALES-DAILY — SALES-DAILY loader", incident.description, incident.suggestion, link):
            assert shown in content, (content_type, shown)


def test_an_smtp_server_that_is_down_is_retried_until_it_is_up(open_incident, mailbox: Mailbox, slack):
    mailbox.stop()
    incident = open_incident()

    delivery = delivery_of(incident, ChannelKind.EMAIL)
    assert delivery.status == DeliveryStatus.FAILED
    assert "SMTP server unreachable" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()

    mailbox.start()
    delivery = send_again(delivery)

    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 2
    assert len(mailbox.to(ONCALL)) == 1


def test_a_refused_recipient_gives_up_for_good(open_incident, mailbox: Mailbox, slack):
    mailbox.refused.add(ONCALL)
    incident = open_incident()

    delivery = delivery_of(incident, ChannelKind.EMAIL)
    assert delivery.status == DeliveryStatus.GAVE_UP and delivery.attempts == 1
    assert ONCALL in delivery.last_error
    assert mailbox.messages == []
    assert not Channel.objects.get(name="email").healthy
    assert any("failed: recipient refused" in message for message in timeline(incident, EventKind.NOTIFY_FAILED))
    assert send_again(delivery).attempts == 1  # nothing left to retry


# --- Slack bot ---------------------------------------------------------------------------------------


def test_an_opened_incident_is_posted_to_slack_as_block_kit(open_incident, slack: FakeSlack):
    incident = open_incident()

    [post] = slack.posts("#alerts-high")
    delivery = delivery_of(incident, ChannelKind.SLACK)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.external_id == f"C0HIGH:{post['ts']}"
    assert post["text"] == f"[HIGH] {incident.title}"
    header, fields, *_rest, actions = post["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": incident.title, "emoji": True}}
    field_texts = [field["text"] for field in fields["fields"]]
    assert "*Severity:*\n🟠 HIGH" in field_texts
    assert "*Service:*\nSALES-DAILY — SALES-DAILY loader" in field_texts
    [button] = actions["elements"]
    assert button["text"]["text"] == "View incident"
    assert button["url"] == f"http://127.0.0.1:8000/admin/incidents/incident/{incident.pk}/change/"
    assert post["metadata"]["event_payload"]["key"] == delivery.key_digest


def test_acknowledging_updates_the_slack_message_and_replies_in_its_thread(
    open_incident, mailbox: Mailbox, slack: FakeSlack, operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    with django_capture_on_commit_callbacks(execute=True):
        incident_acknowledge(user=operator, incident=incident)

    [post] = slack.posts("#alerts-high")
    assert "*Acknowledged*" in json.dumps(post["blocks"], ensure_ascii=False)
    assert [reply["text"] for reply in slack.replies(post)] == ["Acknowledged by otto-operator."]
    update = delivery_of(incident, ChannelKind.SLACK, Purpose.ACKNOWLEDGED)
    assert update.status == DeliveryStatus.SENT and update.external_id == f"C0HIGH:{post['ts']}"
    assert len(mailbox.to(ONCALL)) == 1  # email hears about the opening and the resolution only


def test_resolving_updates_the_slack_message_and_emails_the_resolution(
    open_incident, mailbox: Mailbox, slack: FakeSlack, operator, django_capture_on_commit_callbacks
):
    incident = open_incident()

    with django_capture_on_commit_callbacks(execute=True):
        incident_resolve(user=operator, incident=incident)

    [post] = slack.posts("#alerts-high")
    assert "*Resolved*" in json.dumps(post["blocks"], ensure_ascii=False)
    assert [reply["text"] for reply in slack.replies(post)] == ["Resolved by otto-operator."]
    opened, resolved = mailbox.to(ONCALL)
    assert resolved["Subject"] == f"[HIGH] Resolved: {incident.title}"
    assert "Resolved by otto-operator." in resolved.get_body(preferencelist=("plain",)).get_content()
    assert resolved["Message-ID"] != opened["Message-ID"]


def test_a_slack_rate_limit_is_retried_after_retry_after_and_posts_once(open_incident, slack: FakeSlack):
    slack.fail_next("chat.postMessage", "ratelimited", status=429, retry_after=120)
    before = timezone.now()
    incident = open_incident()

    delivery = delivery_of(incident, ChannelKind.SLACK)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "rate limited by Slack"
    assert delivery.next_attempt_at >= before + dt.timedelta(seconds=120)
    assert slack.posts("#alerts-high") == []

    delivery = send_again(delivery)

    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 2
    assert len(slack.posts("#alerts-high")) == 1


def test_a_revoked_slack_token_gives_up_at_once_and_tells_the_admins(
    open_incident, mailbox: Mailbox, slack: FakeSlack, admin_user, settings
):
    admin_user.email = "ada@example.com"
    admin_user.save()
    settings.SLACK_BOT_TOKEN = "xoxb-revoked-token"
    incident = open_incident()

    delivery = delivery_of(incident, ChannelKind.SLACK)
    assert delivery.status == DeliveryStatus.GAVE_UP and delivery.attempts == 1
    assert delivery.last_error == "Slack: invalid_auth"
    channel = Channel.objects.get(name="slack")
    assert not channel.healthy and channel.unhealthy_reason == "Slack: invalid_auth"
    [warning] = mailbox.to("ada@example.com")
    assert warning["Subject"] == "[ETL Monitor] Notification channel slack is not working"
    assert "invalid_auth" in warning.get_content()
    assert any("Slack: invalid_auth" in message for message in timeline(incident, EventKind.NOTIFY_FAILED))
    assert slack.messages == []


# --- generic webhook and Slack incoming webhook ----------------------------------------------------------


@pytest.fixture
def webhook_channel(webhook: WebhookReceiver, team: Team) -> Channel:
    channel = Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=webhook.SECRET)
    route_to(team, "ops-hook")
    return channel


def test_the_generic_webhook_receives_a_signed_versioned_payload(
    open_incident, webhook: WebhookReceiver, webhook_channel: Channel
):
    incident = open_incident()

    [request] = webhook.requests
    assert request["signed"]
    [payload] = webhook.accepted
    assert payload["version"] == "1" and payload["event"] == "incident.opened"
    assert payload["incident"]["id"] == incident.pk
    assert payload["incident"]["title"] == incident.title
    assert payload["incident"]["severity"] == "HIGH"
    assert payload["incident"]["service"] == "SALES-DAILY — SALES-DAILY loader"
    delivery = delivery_of(incident, ChannelKind.WEBHOOK)
    assert delivery.status == DeliveryStatus.SENT
    assert request["delivery"] == delivery.key_digest == delivery.external_id


def test_a_failing_webhook_is_retried_until_it_accepts_exactly_once(
    open_incident, webhook: WebhookReceiver, webhook_channel: Channel
):
    webhook.failures_left = 3
    incident = open_incident()
    delivery = delivery_of(incident, ChannelKind.WEBHOOK)

    for _ in range(3):
        assert delivery.status == DeliveryStatus.FAILED and delivery.last_error == "webhook: HTTP 500"
        delivery = send_again(delivery)

    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == 4
    assert Delivery.objects.filter(channel=webhook_channel).count() == 1
    assert len(webhook.requests) == 4 and len(webhook.accepted) == 1
    assert {request["delivery"] for request in webhook.requests} == {delivery.key_digest}  # receivers can dedupe
    assert all(request["signed"] for request in webhook.requests)


def test_a_retry_after_the_webhook_url_is_fixed_goes_to_the_fixed_url(
    open_incident, httpserver, webhook: WebhookReceiver, webhook_channel: Channel, admin_user
):
    httpserver.expect_request("/gone", method="POST").respond_with_data("no such hook", status=404)
    channel_save(user=admin_user, data={"url": httpserver.url_for("/gone")}, channel=webhook_channel)
    incident = open_incident()
    delivery = delivery_of(incident, ChannelKind.WEBHOOK)
    assert delivery.status == DeliveryStatus.GAVE_UP and delivery.last_error == "webhook: HTTP 404"

    channel_save(user=admin_user, data={"url": webhook.url}, channel=Channel.objects.get(pk=webhook_channel.pk))
    delivery_retry(user=admin_user, delivery=delivery)
    delivery = send_again(delivery)

    assert delivery.status == DeliveryStatus.SENT
    [payload] = webhook.accepted
    assert payload["incident"]["id"] == incident.pk


def test_a_retry_after_the_slack_webhook_url_is_fixed_posts_to_the_fixed_url(
    open_incident, httpserver, team: Team, admin_user
):
    """The incoming-webhook URL is the channel's secret: read at each attempt, never in the payload."""
    httpserver.expect_request("/services/old", method="POST").respond_with_data("no_service", status=404)
    httpserver.expect_request("/services/new", method="POST").respond_with_data("ok")
    channel = Channel.objects.create(
        name="slack-hook", kind=ChannelKind.SLACK_WEBHOOK, secret=httpserver.url_for("/services/old")
    )
    route_to(team, "slack-hook")
    incident = open_incident()
    delivery = delivery_of(incident, ChannelKind.SLACK_WEBHOOK)
    assert delivery.status == DeliveryStatus.GAVE_UP

    channel.secret = httpserver.url_for("/services/new")  # channel_save wants https://: the local server is http
    channel.save()
    delivery_retry(user=admin_user, delivery=delivery)
    delivery = send_again(delivery)

    assert delivery.status == DeliveryStatus.SENT
    assert [request.path for request, _response in httpserver.log] == ["/services/old", "/services/new"]
    assert httpserver.log[-1][0].get_json()["text"] == f"[HIGH] {incident.title}"


def test_a_slack_incoming_webhook_posts_the_blocks(open_incident, httpserver, team: Team):
    httpserver.expect_request("/services/T0/B0/hook", method="POST").respond_with_data("ok")
    Channel.objects.create(
        name="slack-hook", kind=ChannelKind.SLACK_WEBHOOK, secret=httpserver.url_for("/services/T0/B0/hook")
    )
    route_to(team, "slack-hook")
    incident = open_incident()

    [(request, _response)] = httpserver.log
    posted = request.get_json()
    assert posted["text"] == f"[HIGH] {incident.title}"
    assert posted["blocks"][0]["text"]["text"] == incident.title
    assert delivery_of(incident, ChannelKind.SLACK_WEBHOOK).status == DeliveryStatus.SENT


# --- testing a channel -----------------------------------------------------------------------------------


def test_channel_test_sends_a_test_message_through_each_channel(
    mailbox: Mailbox, slack: FakeSlack, webhook: WebhookReceiver, admin_user
):
    admin_user.email = "ada@example.com"
    admin_user.save()
    hook = Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=webhook.url, secret=webhook.SECRET)

    sent = [
        channel_test(user=admin_user, channel=Channel.objects.get(name="email")),
        channel_test(user=admin_user, channel=Channel.objects.get(name="slack"), target="#alerts-low"),
        channel_test(user=admin_user, channel=hook),
    ]

    assert [delivery.status for delivery in sent] == [DeliveryStatus.SENT] * 3
    [message] = mailbox.to("ada@example.com")
    assert message["Subject"] == "[TEST] ETL Monitor test notification"
    [post] = slack.posts("#alerts-low")
    assert post["text"] == "ETL Monitor test notification: this channel works."
    [payload] = webhook.accepted
    assert payload["event"] == "incident.test" and payload["incident"] is None


# --- what never leaves ---------------------------------------------------------------------------------


def everything_sent(mailbox: Mailbox, httpserver) -> list[str]:
    """Every email as read and every HTTP request body that reached Slack and the webhook."""
    bodies = [request.get_data(as_text=True) for request, _response in httpserver.log]
    return [text_of(message) for message in mailbox.messages] + bodies


def test_a_hidden_loader_name_appears_in_no_message(
    open_incident,
    active_loader: Loader,
    team: Team,
    mailbox,
    slack,
    webhook_channel,
    httpserver,
    operator,
    django_capture_on_commit_callbacks,
):
    Loader.objects.filter(pk=active_loader.pk).update(name="Payroll bonus feed")
    FieldProtection.objects.create(model_label="loaders.loader", field_name="name", level="HIDDEN")
    NotificationRule.objects.filter(team=team).update(channels=["email", "slack", "ops-hook"])
    incident = open_incident()
    with django_capture_on_commit_callbacks(execute=True):
        incident_resolve(user=operator, incident=incident)

    sent = everything_sent(mailbox, httpserver)
    assert len(mailbox.messages) == 2 and len(slack.messages) == 2 and len(httpserver.log) == 5
    [post] = slack.posts("#alerts-high")
    assert "*Service:*\nSALES-DAILY" in [field["text"] for field in post["blocks"][1]["fields"]]
    assert not [text for text in sent if "Payroll bonus feed" in text]


def test_channel_secrets_appear_in_no_message_and_no_error(
    open_incident, team: Team, slack: FakeSlack, webhook: WebhookReceiver, webhook_channel, httpserver, settings
):
    slack_channel = Channel.objects.get(name="slack")
    slack_channel.secret = FakeSlack.TOKEN  # the channel's own token wins over SLACK_BOT_TOKEN
    slack_channel.save()
    settings.SLACK_BOT_TOKEN = ""
    dead_hook = f"http://127.0.0.1:{free_port()}/services/T0/B0/secret-path-8812"
    Channel.objects.create(name="slack-hook", kind=ChannelKind.SLACK_WEBHOOK, secret=dead_hook)
    NotificationRule.objects.filter(team=team).update(channels=["slack", "ops-hook", "slack-hook"])
    incident = open_incident()

    assert delivery_of(incident, ChannelKind.SLACK).status == DeliveryStatus.SENT
    assert delivery_of(incident, ChannelKind.WEBHOOK).status == DeliveryStatus.SENT
    assert delivery_of(incident, ChannelKind.SLACK_WEBHOOK).status == DeliveryStatus.FAILED
    secrets = (FakeSlack.TOKEN, WebhookReceiver.SECRET, dead_hook, "secret-path-8812")
    recorded = [d.last_error for d in Delivery.objects.all()] + [json.dumps(d.payload) for d in Delivery.objects.all()]
    recorded += list(incident.events.values_list("message", flat=True))
    bodies = [request.get_data(as_text=True) for request, _response in httpserver.log]
    for secret in secrets:
        assert not [text for text in recorded + bodies if secret in text], secret


# --- recovery after a worker died mid-send ---------------------------------------------------------------


def worker_died_while_sending(delivery: Delivery, *, after_posting: bool) -> None:
    """What a worker killed mid-send leaves: the delivery SENDING under an expired lease, and the
    Slack message posted (it died before recording the outcome) or not (it died before posting)."""
    now = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING,
        attempts=1,
        attempt_started_at=now - dt.timedelta(minutes=10),
        lease_until=now - dt.timedelta(minutes=1),
    )
    if after_posting:
        delivery.refresh_from_db()
        transport_for(delivery.channel).send(delivery)


@pytest.mark.parametrize(
    ("after_posting", "outcome", "attempts"),
    [(True, "found_sent", 1), (False, "recovered", 2)],
    ids=["slack-has-it", "slack-never-got-it"],
)
def test_recovery_asks_slack_and_posts_exactly_once(
    open_incident, slack: FakeSlack, django_capture_on_commit_callbacks, after_posting, outcome, attempts
):
    incident = open_incident(send=False)
    delivery = delivery_of(incident, ChannelKind.SLACK)
    worker_died_while_sending(delivery, after_posting=after_posting)

    with django_capture_on_commit_callbacks(execute=True):
        counts = deliveries_recover()

    [post] = slack.posts("#alerts-high")
    assert counts == {"recovered": 0, "found_sent": 0, "enqueued": 0} | {outcome: 1}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.attempts == attempts
    assert delivery.external_id == f"C0HIGH:{post['ts']}"
    assert not delivery.possible_duplicate  # Slack could tell whether the first attempt arrived


def test_recovery_finds_an_escalation_posted_in_the_thread_and_does_not_post_it_again(
    open_incident, slack: FakeSlack, django_capture_on_commit_callbacks
):
    incident = open_incident()
    with django_capture_on_commit_callbacks(execute=False):  # the escalation's tasks never ran
        escalations_run(now=timezone.now() + dt.timedelta(seconds=901))
    delivery = delivery_of(incident, ChannelKind.SLACK, Purpose.ESCALATED)
    worker_died_while_sending(delivery, after_posting=True)

    with django_capture_on_commit_callbacks(execute=True):
        counts = deliveries_recover()

    [post] = slack.posts("#alerts-high")
    [reply] = slack.replies(post)  # conversations.history lists no thread replies: look in the thread
    assert reply["text"] == "Not acknowledged in time: escalated."
    assert counts["found_sent"] == 1 and counts["recovered"] == 0
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.external_id == f"C0HIGH:{reply['ts']}"


def test_recovery_of_an_acknowledgement_replies_in_the_thread_once(
    open_incident, slack: FakeSlack, operator, django_capture_on_commit_callbacks
):
    incident = open_incident()
    with django_capture_on_commit_callbacks(execute=False):
        incident_acknowledge(user=operator, incident=incident)
    delivery = delivery_of(incident, ChannelKind.SLACK, Purpose.ACKNOWLEDGED)
    worker_died_while_sending(delivery, after_posting=True)

    with django_capture_on_commit_callbacks(execute=True):
        deliveries_recover()

    [post] = slack.posts("#alerts-high")
    assert "*Acknowledged*" in json.dumps(post["blocks"], ensure_ascii=False)
    assert [reply["text"] for reply in slack.replies(post)] == ["Acknowledged by otto-operator."]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT and delivery.external_id == f"C0HIGH:{post['ts']}"
