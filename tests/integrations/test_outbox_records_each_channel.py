"""A batch of deliveries to several channels records each channel's outcome as soon as that channel
is done: a receiver that hangs does not hold back the record of the others, so a worker killed
while it waits leaves only the hanging receiver's messages to the recovery sweep (an email already
accepted by the SMTP server is not sent a second time)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections
from django.utils import timezone

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule
from integrations.models import Channel, Delivery, NotificationRule
from integrations.notifications.outbox import deliveries_send
from tests.incidents.conftest import add_signals
from tests.integrations.fakes import FakeSlack, serve
from tests.mailbox import Mailbox

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_it_records_the_email_while_slack_still_hangs(require_postgres, active_loader, settings):
    slack = FakeSlack()
    stop = serve(slack)
    mailbox = Mailbox()
    mailbox.start()
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", mailbox.port
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    NotificationRule.objects.update_or_create(
        severity="MEDIUM",
        team=None,
        tag=None,
        defaults={
            "channels": ["email", "slack"],
            "recipients": ["oncall@example.com"],
            "slack_channel": "#alerts-medium",
        },
    )
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.create(name="hang", kind="signal_failure_rate", threshold=5.0, severity="MEDIUM")
    add_signals(active_loader, failed=5, ok=5, at=timezone.now())
    rule_evaluate(rule=rule, now=timezone.now())
    # Tasks run inline in tests, so both went out already: start again from pending deliveries.
    Delivery.objects.update(status="PENDING", attempts=0, external_id="", sent_at=None)
    email = Delivery.objects.get(channel__kind="EMAIL")
    ids = list(Delivery.objects.values_list("pk", flat=True))
    assert len(ids) == 2
    emails, posts = mailbox.count, len(slack.posts())
    release = threading.Event()
    slack.script.append(("hang", release))
    seen: list[str] = []

    def watch() -> None:
        """From another connection: the email's status while Slack holds its answer."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen:
            if Delivery.objects.filter(pk=email.pk, status="SENT").exists():
                seen.append(f"SENT while Slack hung, after {10 - (deadline - time.monotonic()):.1f} s")
            time.sleep(0.05)
        release.set()
        connections.close_all()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        deliveries_send(ids)
    finally:
        release.set()
        watcher.join(timeout=20)
        stop()
        mailbox.stop()

    assert seen, "the email was recorded only once the hanging Slack post had answered"
    assert (mailbox.count, len(slack.posts())) == (emails + 1, posts + 1)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"SENT"}
