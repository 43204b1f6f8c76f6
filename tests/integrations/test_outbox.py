"""Outbox guarantees that need no worker: the admin banner for a broken channel, two senders
racing for the same deliveries, and enqueueing in batches after the commit."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.utils import timezone

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule
from integrations.models import Channel, Delivery, NotificationRule
from integrations.notifications.channels import channel_mark_unhealthy
from integrations.notifications.outbox import deliveries_send
from tests.incidents.conftest import add_signals
from tests.integrations.fakes import FakeSlack, serve


def test_an_unhealthy_channel_shows_a_banner_on_every_admin_page(admin_client, db):
    slack = Channel.objects.get(name="slack")
    assert "channel-health" not in admin_client.get("/admin/").content.decode()
    channel_mark_unhealthy(slack, "Slack: invalid_auth")
    for page in ("/admin/", "/admin/incidents/incident/", "/admin/loaders/loader/"):
        html = admin_client.get(page).content.decode()
        assert 'id="channel-health"' in html and "Slack: invalid_auth" in html, page


def test_the_banner_is_not_shown_once_the_channel_is_saved_again(admin_client, admin_user, db):
    from integrations.notifications.channels import channel_save

    slack = Channel.objects.get(name="slack")
    channel_mark_unhealthy(slack, "Slack: invalid_auth")
    channel_save(user=admin_user, data={"enabled": True}, channel=slack)
    assert "channel-health" not in admin_client.get("/admin/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_two_senders_racing_for_the_same_deliveries_send_each_once(require_postgres, active_loader, settings):
    slack = FakeSlack()
    stop = serve(slack)
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    NotificationRule.objects.update_or_create(
        severity="MEDIUM", team=None, tag=None, defaults={"channels": ["slack"], "slack_channel": "#alerts-medium"}
    )
    DetectionRule.objects.update(enabled=False)
    rule = DetectionRule.objects.create(name="race", kind="signal_failure_rate", threshold=5.0, severity="MEDIUM")
    now = timezone.now()
    add_signals(active_loader, failed=5, ok=5, at=now)
    rule_evaluate(rule=rule, now=now)
    # Tasks run inline in tests, so it went out already: start again from a pending delivery.
    Delivery.objects.update(status="PENDING", attempts=0, external_id="", sent_at=None)
    slack.messages.clear()
    ids = list(Delivery.objects.values_list("pk", flat=True))
    barrier = threading.Barrier(2)
    results: list[int] = []

    def sender() -> None:
        barrier.wait()
        results.append(len([d for d in deliveries_send(ids) if d.status == "SENT"]))
        connections.close_all()

    try:
        threads = [threading.Thread(target=sender) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        stop()
    assert sorted(results) == [0, 1]  # one sender took it, the other skipped it (SKIP LOCKED)
    assert len(slack.posts()) == 1
    assert Delivery.objects.get().status == "SENT" and Delivery.objects.get().attempts == 1


def _webhook_delivery(statuses: list[int], attempts: int, rate_limited: int = 0) -> tuple[Delivery, object]:
    """A delivery to a receiver that answers ``statuses`` in turn, ``attempts`` already spent."""
    from integrations.models import Purpose
    from tests.integrations.fakes import WebhookReceiver

    hooks = WebhookReceiver()
    stop = serve(hooks)
    hooks.statuses = statuses
    channel = Channel.objects.create(name="hook", kind="WEBHOOK", url=hooks.url)
    now = timezone.now()
    delivery = Delivery.objects.create(
        channel=channel,
        purpose=Purpose.TEST,
        target=hooks.url,
        key=f"test-{attempts}-{statuses}",
        payload={"version": "1", "event": "incident.test"},
        payload_digest="x",
        attempts=attempts,
        rate_limited_attempts=rate_limited,
        next_attempt_at=now,
    )
    return delivery, stop


@pytest.mark.parametrize(("status", "outcome"), [(429, "FAILED"), (500, "GAVE_UP")])
def test_a_receiver_that_only_rate_limits_gets_more_attempts_than_a_broken_one(db, settings, status, outcome):
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED = 8, 30
    delivery, stop = _webhook_delivery([status], attempts=7)  # this is the 8th
    try:
        deliveries_send([delivery.pk])
    finally:
        stop()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (outcome, 8)


def test_attempts_refused_as_rate_limited_do_not_count_against_the_other_failures(db, settings):
    # Seen in the Jira benchmark: six 429s, then one timeout, and the delivery gave up at once.
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED = 8, 30
    delivery, stop = _webhook_delivery([500], attempts=8, rate_limited=6)  # the 9th; 2 real failures so far
    try:
        deliveries_send([delivery.pk])
    finally:
        stop()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.rate_limited_attempts) == ("FAILED", 9, 6)


def test_a_rate_limited_attempt_is_counted_as_one(db, settings):
    delivery, stop = _webhook_delivery([429], attempts=2, rate_limited=1)
    try:
        deliveries_send([delivery.pk])
    finally:
        stop()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.rate_limited_attempts) == ("FAILED", 3, 2)


def test_other_failures_still_give_up_at_their_limit(db, settings):
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED = 8, 30
    delivery, stop = _webhook_delivery([500], attempts=13, rate_limited=6)  # the 8th that is not a 429
    try:
        deliveries_send([delivery.pk])
    finally:
        stop()
    delivery.refresh_from_db()
    assert delivery.status == "GAVE_UP" and "after 14 attempts" in delivery.last_error


def test_rate_limits_too_give_up_at_their_own_limit(db, settings):
    settings.NOTIFY_MAX_ATTEMPTS, settings.NOTIFY_MAX_ATTEMPTS_RATE_LIMITED = 8, 30
    delivery, stop = _webhook_delivery([429], attempts=29)
    try:
        deliveries_send([delivery.pk])
    finally:
        stop()
    delivery.refresh_from_db()
    assert delivery.status == "GAVE_UP" and "after 30 attempts" in delivery.last_error
