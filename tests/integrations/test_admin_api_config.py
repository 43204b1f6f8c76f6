"""Notification channels, rules and deliveries in the admin, over the API and in apply_config."""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.models import Incident
from integrations.models import Channel, Delivery, DeliveryStatus, NotificationRule
from integrations.notifications import channels
from tests.config_files import config_apply, config_refused
from tests.integrations.conftest import assert_never_shown, channel_pages

TOKEN = "xoxb-never-show-me-1234567890"
_keys = itertools.count()


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def email_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


@pytest.fixture
def slack_bot(admin_user) -> Channel:
    """The seeded Slack bot channel, now with its own token."""
    channel = Channel.objects.get(name="slack")
    return channels.channel_save(user=admin_user, data={"secret": TOKEN}, channel=channel)


@pytest.fixture
def incident(db) -> Incident:
    now = timezone.now()
    return Incident.objects.create(
        title="SALES-DAILY failed",
        severity="HIGH",
        category="TRANSACTION",
        subject="SALES-DAILY",
        fingerprint="sales-daily-failed",
        first_seen=now,
        last_seen=now,
    )


def delivery(incident: Incident, status: str, target: str = "ops@example.com") -> Delivery:
    return Delivery.objects.create(
        incident=incident,
        channel=Channel.objects.get(name="email"),
        purpose="OPENED",
        target=target,
        key=f"test-{next(_keys)}",
        payload={"subject": "x", "text": "x"},
        payload_digest="x",
        status=status,
        attempts=8 if status == DeliveryStatus.GAVE_UP else 1,
        last_error="SMTP server unreachable" if status == DeliveryStatus.GAVE_UP else "",
        next_attempt_at=timezone.now() - dt.timedelta(minutes=5),
        sent_at=timezone.now() if status == DeliveryStatus.SENT else None,
    )


def rule_form(**overrides) -> dict:
    data = {
        "severity": "HIGH",
        "team": "",
        "tag": "",
        "channels": ["email"],
        "recipients": "ops@example.com",
        "slack_channel": "",
        "escalation_timeout": "600",
        "escalation_tiers": "[]",
        "escalation_repeat": "1",
        "repeat_interval": "",
        "enabled": "on",
    }
    return {**data, **overrides}


# --- admin -------------------------------------------------------------------------------------


def test_every_notification_admin_page_renders_for_an_admin(client, admin_user, slack_bot, incident):
    sent = delivery(incident, DeliveryStatus.SENT)
    rule = NotificationRule.objects.get(severity="CRITICAL", team=None, tag=None)
    client.force_login(admin_user)
    for url in (
        "/admin/integrations/channel/",
        "/admin/integrations/channel/add/",
        f"/admin/integrations/channel/{slack_bot.pk}/change/",
        "/admin/integrations/notificationrule/",
        "/admin/integrations/notificationrule/add/",
        f"/admin/integrations/notificationrule/{rule.pk}/change/",
        "/admin/integrations/delivery/",
        "/admin/integrations/delivery/?q=ops%40example",
        f"/admin/integrations/delivery/?q={incident.pk}",
        "/admin/integrations/delivery/?q=not-a-number",
        f"/admin/integrations/delivery/{sent.pk}/change/",
    ):
        assert client.get(url).status_code == 200, url


def test_the_incident_page_lists_its_deliveries_read_only(client, viewer, incident):
    delivery(incident, DeliveryStatus.GAVE_UP, target="oncall@example.com")
    client.force_login(viewer)
    page = client.get(f"/admin/incidents/incident/{incident.pk}/change/").content.decode()
    assert "oncall@example.com" in page and "SMTP server unreachable" in page
    assert 'name="deliveries-0-target"' not in page  # shown, not editable


def test_the_channel_secret_never_appears_in_the_admin_or_its_history(client, admin_user, slack_bot):
    client.force_login(admin_user)
    change = client.post(
        f"/admin/integrations/channel/{slack_bot.pk}/change/",
        {"name": "slack", "kind": "SLACK", "enabled": "on", "url": "", "secret": "xoxb-a-second-token"},
    )
    assert change.status_code == 302
    assert_never_shown(slack_bot, client, TOKEN, "xoxb-a-second-token")
    pages = channel_pages(client, slack_bot)
    assert "set (hidden)" in pages[1].content.decode()
    assert "leave empty to keep the stored secret" in pages[1].content.decode()
    assert "secret" not in {f.name for f in Channel.history.model._meta.fields}


def test_saving_a_channel_with_an_empty_secret_keeps_it_and_marks_it_healthy(client, admin_user, slack_bot):
    channels.channel_mark_unhealthy(slack_bot, "invalid_auth")
    client.force_login(admin_user)
    response = client.post(
        f"/admin/integrations/channel/{slack_bot.pk}/change/",
        {"name": "slack", "kind": "SLACK", "url": "", "secret": ""},  # also disables it
    )
    assert response.status_code == 302
    slack_bot.refresh_from_db()
    assert slack_bot.secret == TOKEN
    assert (slack_bot.enabled, slack_bot.healthy, slack_bot.unhealthy_reason) == (False, True, "")
    assert slack_bot.history.latest().history_user == admin_user


def test_the_channel_form_shows_the_service_errors_on_the_fields(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/channel/add/",
        {"name": "hooks", "kind": "WEBHOOK", "enabled": "on", "url": "", "secret": ""},
    )
    assert response.status_code == 200
    assert "A generic webhook needs a URL." in response.context["adminform"].form.errors["url"]
    response = client.post(
        "/admin/integrations/channel/add/",
        {"name": "hook", "kind": "SLACK_WEBHOOK", "enabled": "on", "url": "", "secret": "http://plain"},
    )
    assert "An incoming-webhook URL starts with https://." in response.context["adminform"].form.errors["secret"]
    assert not Channel.objects.filter(name__in=["hooks", "hook"]).exists()


def test_an_admin_sends_a_test_email_from_the_channel_page(client, admin_user, email_backend):
    email = Channel.objects.get(name="email")
    client.force_login(admin_user)
    response = client.post(
        f"/admin/integrations/channel/{email.pk}/test/", {"_test_target": "me@example.com"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["email: test notification sent to me@example.com."]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["me@example.com"]


def test_the_test_action_reports_why_a_channel_cannot_send(client, admin_user, settings):
    settings.SLACK_BOT_TOKEN = ""
    slack = Channel.objects.get(name="slack")
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/channel/",
        {"action": "send_test", "_selected_action": [slack.pk]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Test of slack not sent: slack cannot send: no Slack bot token (SLACK_BOT_TOKEN)."
    ]
    assert not Delivery.objects.exists()


def test_a_slack_test_goes_to_the_least_severe_routed_channel(db):
    slack = Channel.objects.get(name="slack")
    assert channels.channel_test_target(slack) == "#alerts-low"
    NotificationRule.objects.all().delete()
    assert channels.channel_test_target(slack) == ""


def test_the_rule_form_names_bad_addresses_and_bad_tiers(client, admin_user):
    NotificationRule.objects.filter(severity="HIGH").delete()
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/notificationrule/add/",
        rule_form(
            recipients="ops@example.com\nnot-an-address, also bad",
            escalation_tiers=json.dumps([{"channels": ["pager"]}, {"channels": ["email"], "phone": "1"}]),
        ),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["recipients"] == ["Not valid email address(es): not-an-address, also, bad."]
    assert errors["escalation_tiers"] == [
        "escalation_tiers[0].channels: Unknown channel(s): pager (known: email, slack).",
        "escalation_tiers[1]: Unknown key(s): phone (allowed: channels, recipients, slack_channel, oncall).",
    ]
    response = client.post("/admin/integrations/notificationrule/add/", rule_form(channels=[]))
    assert response.context["adminform"].form.errors["channels"] == ["Name at least one channel."]
    assert not NotificationRule.objects.filter(severity="HIGH").exists()


def test_an_admin_creates_a_rule_in_the_admin(client, admin_user):
    NotificationRule.objects.filter(severity="HIGH").delete()
    client.force_login(admin_user)
    response = client.post(
        "/admin/integrations/notificationrule/add/",
        rule_form(
            channels=["email", "slack"],
            recipients="ops@example.com, lead@example.com",
            slack_channel="#alerts-high",
            escalation_tiers='[{"channels": ["email"], "recipients": ["cto@example.com"]}]',
        ),
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = NotificationRule.objects.get(severity="HIGH", team=None, tag=None)
    assert rule.recipients == ["ops@example.com", "lead@example.com"]
    assert rule.escalation_tiers == [{"channels": ["email"], "recipients": ["cto@example.com"], "slack_channel": ""}]
    assert rule.history.latest().history_user == admin_user
    again = client.post("/admin/integrations/notificationrule/add/", rule_form())
    assert again.context["adminform"].form.errors["severity"] == [
        "There is already a notification rule for HIGH with no team or tag."
    ]


def test_operators_retry_deliveries_in_the_admin_and_viewers_cannot(client, operator, viewer, incident):
    gave_up, sent = delivery(incident, DeliveryStatus.GAVE_UP), delivery(incident, DeliveryStatus.SENT)
    client.force_login(viewer)
    assert "Retry selected deliveries" not in client.get("/admin/integrations/delivery/").content.decode()
    client.force_login(operator)
    response = client.post(
        "/admin/integrations/delivery/",
        {"action": "retry", "_selected_action": [gave_up.pk, sent.pk]},
        follow=True,
    )
    shown = [str(m) for m in response.context["messages"]]
    assert f"#{sent.pk}: Delivery #{sent.pk} is sent; only one that failed can be retried." in shown
    assert "1 delivery(ies) will be sent again." in shown
    gave_up.refresh_from_db()
    assert gave_up.status == DeliveryStatus.PENDING
    page = client.get(f"/admin/integrations/delivery/{gave_up.pk}/change/").content.decode()
    assert 'name="target"' not in page  # read-only


# --- API ---------------------------------------------------------------------------------------


def test_viewers_read_routing_but_only_admins_write_it(viewer, admin_user):
    rule = {"severity": "HIGH", "team": None, "channels": ["email"], "recipients": ["ops@example.com"]}
    assert api(viewer).get("/api/v1/notification-rules/").status_code == 200
    assert api(viewer).get("/api/v1/channels/").status_code == 200
    assert api(viewer).get("/api/v1/deliveries/").status_code == 200
    assert api(viewer).post("/api/v1/notification-rules/", rule, format="json").status_code == 403
    assert api(viewer).post("/api/v1/channels/", {"name": "x", "kind": "EMAIL"}, format="json").status_code == 403
    assert api(viewer).patch("/api/v1/channels/email/", {"enabled": False}, format="json").status_code == 403
    NotificationRule.objects.filter(severity="HIGH").delete()
    created = api(admin_user).post("/api/v1/notification-rules/", rule, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["channels"] == ["email"]
    rule_id = created.json()["id"]
    changed = api(admin_user).patch(
        f"/api/v1/notification-rules/{rule_id}/", {"escalation_timeout": 120}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["escalation_timeout"] == 120
    assert api(viewer).delete(f"/api/v1/notification-rules/{rule_id}/").status_code == 403
    assert api(admin_user).delete(f"/api/v1/notification-rules/{rule_id}/").status_code == 204
    assert NotificationRule.history.filter(id=rule_id, history_type="-").get().history_user == admin_user


def test_api_validation_errors_name_the_field(admin_user, team):
    client = api(admin_user)
    bad = client.post("/api/v1/notification-rules/", {"severity": "HIGH", "colour": "red"}, format="json")
    assert bad.status_code == 400 and bad.json() == {"colour": ["Unknown field."]}
    bad = client.post(
        "/api/v1/notification-rules/",
        {
            "severity": "HIGH",
            "team": team.slug,
            "channels": ["email", "pager", "sms"],
            "recipients": ["ops@example.com", "nobody"],
            "escalation_tiers": [{"channels": ["slack"], "slack_channel": "#x", "when": "later"}],
        },
        format="json",
    )
    assert bad.status_code == 400
    assert bad.json() == {
        "channels": ["Unknown channel(s): pager, sms (known: email, slack)."],
        "recipients": ["Not valid email address(es): nobody."],
        "escalation_tiers[0]": ["Unknown key(s): when (allowed: channels, recipients, slack_channel, oncall)."],
    }
    webhook = client.post("/api/v1/channels/", {"name": "hooks", "kind": "WEBHOOK"}, format="json")
    assert webhook.status_code == 400 and webhook.json() == {"url": ["A generic webhook needs a URL."]}


def test_the_api_never_returns_a_channel_secret(admin_user, viewer):
    client = api(admin_user)
    created = client.post(
        "/api/v1/channels/",
        {"name": "ops-slack", "kind": "SLACK", "secret": TOKEN},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert "secret" not in created.json() and created.json()["has_secret"] is True
    kept = client.patch("/api/v1/channels/ops-slack/", {"secret": "", "enabled": False}, format="json")
    assert kept.status_code == 200 and kept.json()["enabled"] is False
    assert Channel.objects.get(name="ops-slack").secret == TOKEN
    browsable = client.get("/api/v1/channels/ops-slack/", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200
    for response in (
        kept,
        browsable,
        api(viewer).get("/api/v1/channels/"),
        api(viewer).get("/api/v1/channels/ops-slack/"),
    ):
        assert TOKEN not in response.content.decode()
    assert api(viewer).get("/api/v1/channels/nope/").status_code == 404


def test_a_channel_in_use_cannot_be_deleted(admin_user, incident):
    client = api(admin_user)
    refused = client.delete("/api/v1/channels/slack/")
    assert refused.status_code == 409 and "used by the notification rule(s)" in refused.json()["detail"]
    client.post("/api/v1/channels/", {"name": "spare", "kind": "EMAIL"}, format="json")
    assert client.delete("/api/v1/channels/spare/").status_code == 204
    assert not Channel.objects.filter(name="spare").exists()


def test_operators_retry_a_delivery_that_gave_up(operator, viewer, incident):
    gave_up, sent = delivery(incident, DeliveryStatus.GAVE_UP), delivery(incident, DeliveryStatus.SENT)
    listed = api(viewer).get(f"/api/v1/deliveries/?incident={incident.pk}&status=GAVE_UP&channel=email").json()
    assert [d["id"] for d in listed["results"]] == [gave_up.pk]
    for odd in ("abc", "-1", "9" * 30):
        refused = api(viewer).get(f"/api/v1/deliveries/?incident={odd}")
        assert refused.status_code == 400 and refused.json() == {"incident": ["Must be an incident number."]}
    refused = api(viewer).post(f"/api/v1/deliveries/{gave_up.pk}/retry/")
    assert refused.status_code == 403 and "retry deliveries" in refused.json()["detail"]
    done = api(operator).post(f"/api/v1/deliveries/{gave_up.pk}/retry/")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["attempts"]) == ("PENDING", 0)
    assert api(operator).post(f"/api/v1/deliveries/{sent.pk}/retry/").status_code == 409


def test_the_channel_test_endpoint_sends_one_email(admin_user, viewer, email_backend):
    refused = api(viewer).post("/api/v1/channels/email/test/", {"target": "me@example.com"}, format="json")
    assert refused.status_code == 403
    response = api(admin_user).post("/api/v1/channels/email/test/", {"target": "me@example.com"}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["purpose"]) == ("SENT", "TEST")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["me@example.com"]
    no_address = api(admin_user).post("/api/v1/channels/email/test/", {}, format="json")
    assert no_address.status_code == 400 and "target" in no_address.json()  # the admin has no email address


# --- apply_config ------------------------------------------------------------------------------

ROADMAP = """\
notification_rules:
  CRITICAL:
    channels: [email, slack]
    recipients: [oncall-team@company.com, platform-leads@company.com]
    slack_channel: "#alerts-critical"
    escalation_timeout: 300
  LOW:
    channels: [slack]
    slack_channel: "#alerts-low"
    escalation_timeout: null
"""

WITH_OVERRIDES = """\
channels:
  - name: ops-hook
    kind: WEBHOOK
    url: https://hooks.example.com/etl
notification_rules:
  CRITICAL:
    channels: [email, slack, ops-hook]
    recipients: [oncall-team@company.com]
    slack_channel: "#alerts-critical"
    escalation_timeout: 300
    escalation_tiers:
      - channels: [email]
        recipients: [cto@company.com]
    repeat_interval: 3600
    overrides:
      - team: data-platform
        channels: [email]
        recipients: [dp-oncall@company.com]
"""


def apply(tmp_path, text: str, user: str = "ada-admin") -> str:
    return config_apply(tmp_path, text, "--as", user)


def apply_fails(tmp_path, text: str, user: str = "ada-admin") -> str:
    return config_refused(tmp_path, text, "--as", user)


def rows() -> list[tuple]:
    return list(
        NotificationRule.objects.order_by("pk").values_list(
            "severity", "team__slug", "channels", "recipients", "slack_channel", "escalation_timeout"
        )
    )


def test_the_roadmap_yaml_applies_and_reapplying_changes_nothing(tmp_path, admin_user):
    NotificationRule.objects.filter(severity__in=["CRITICAL", "LOW"]).delete()
    out = apply(tmp_path, ROADMAP)
    assert "notification_rules CRITICAL: created" in out and "notification_rules LOW: created" in out
    critical = NotificationRule.objects.get(severity="CRITICAL", team=None, tag=None)
    assert critical.recipients == ["oncall-team@company.com", "platform-leads@company.com"]
    assert (critical.slack_channel, critical.escalation_timeout) == ("#alerts-critical", 300)
    assert NotificationRule.objects.get(severity="LOW").escalation_timeout is None
    before, history = rows(), NotificationRule.history.count()
    out = apply(tmp_path, ROADMAP)
    assert "notification_rules CRITICAL: unchanged" in out and "0 changed" in out
    assert rows() == before and NotificationRule.history.count() == history
    out = apply(tmp_path, ROADMAP.replace("300", "600"))
    assert "notification_rules CRITICAL: changed (escalation_timeout)" in out
    assert NotificationRule.history.count() == history + 1


def test_channels_and_team_overrides_apply_idempotently(tmp_path, admin_user, team):
    out = apply(tmp_path, WITH_OVERRIDES)
    assert "channels ops-hook: created" in out
    assert "notification_rules CRITICAL team data-platform: created" in out
    override = NotificationRule.objects.get(severity="CRITICAL", team=team)
    assert (override.channels, override.recipients) == (["email"], ["dp-oncall@company.com"])
    critical = NotificationRule.objects.get(severity="CRITICAL", team=None)
    assert critical.escalation_tiers == [
        {"channels": ["email"], "recipients": ["cto@company.com"], "slack_channel": ""}
    ]
    assert Channel.objects.get(name="ops-hook").url == "https://hooks.example.com/etl"
    before, history = rows(), (NotificationRule.history.count(), Channel.history.count())
    out = apply(tmp_path, WITH_OVERRIDES)
    assert " 0 changed." in out
    assert rows() == before and (NotificationRule.history.count(), Channel.history.count()) == history


def test_bad_routing_yaml_names_the_path_and_changes_nothing(tmp_path, admin_user):
    bad = (
        WITH_OVERRIDES.replace("kind: WEBHOOK", "kind: WEBHOOK\n    secret: s3cr3t-signing-key")
        .replace("[email, slack, ops-hook]", "[email, pager]")
        .replace("[oncall-team@company.com]", "[oncall-team@company.com, oncall at company]")
        .replace("team: data-platform", "team: nobody")
    )
    before, channels = rows(), list(Channel.objects.values_list("name", flat=True))
    text = apply_fails(tmp_path, bad)
    assert "channels[0].secret: Secrets are not accepted from configuration files" in text
    assert "notification_rules.CRITICAL.channels: Unknown channel(s): pager" in text
    assert "notification_rules.CRITICAL.recipients: Not valid email address(es): oncall at company." in text
    assert "notification_rules.CRITICAL.overrides[0].team: Unknown team 'nobody'." in text
    assert "line 4: channels[0].secret" in text and "line 8: notification_rules.CRITICAL.channels" in text
    assert "s3cr3t-signing-key" not in text
    assert rows() == before and list(Channel.objects.values_list("name", flat=True)) == channels


def test_routing_yaml_refuses_unknown_shapes(tmp_path, admin_user):
    text = apply_fails(
        tmp_path,
        "notification_rules:\n  URGENT: {channels: [email]}\n  HIGH:\n    team: finance\n"
        "    escalation_tiers: [{channels: [email], recipients: [a@b.co], page: true}]\n",
    )
    assert "notification_rules.URGENT: Unknown severity (one of CRITICAL, HIGH, MEDIUM, LOW)." in text
    assert "notification_rules.HIGH.team: Unknown field (a team or a tag goes in an overrides entry)." in text


def test_only_admins_may_apply_routing(tmp_path, editor):
    text = apply_fails(tmp_path, ROADMAP, user=editor.username)
    assert "notification_rules.CRITICAL: Your role does not allow you to manage notification rules." in text
