"""The delivery outbox under faults, with a real Celery worker on Redis and PostgreSQL and local
servers speaking each protocol: retries, Retry-After, a mail server down then up, a permanent
error, and a worker killed in the middle of a send."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.utils import timezone

from etl_monitor.celery import app
from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from integrations.models import Channel, Delivery, NotificationRule
from integrations.notifications.outbox import deliveries_recover
from tests.incidents.conftest import add_signals
from tests.integrations.fakes import FakeSlack, WebhookReceiver, serve
from tests.mailbox import Mailbox
from tests.net import free_port
from tests.processes import celery_worker, postgres_test_url, process_stop

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fakes(require_postgres, require_redis, monkeypatch, settings) -> Iterator[tuple[FakeSlack, WebhookReceiver]]:
    monkeypatch.setitem(app.conf, "task_always_eager", False)
    slack, hooks = FakeSlack(), WebhookReceiver()
    stops = [serve(slack), serve(hooks)]
    # The test process routes (and runs the recovery sweep); the worker sends: same configuration.
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
    yield slack, hooks
    for stop in stops:
        stop()


@pytest.fixture
def smtp_port(settings) -> int:
    port = free_port()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    return port


@contextmanager
def worker(slack: FakeSlack, smtp_port: int) -> Iterator[subprocess.Popen]:
    from tests.platform.test_celery_worker import purge_broker

    env = {
        **os.environ,
        "DATABASE_URL": postgres_test_url(),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_API_BASE_URL": slack.url,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "NOTIFY_BACKOFF_BASE_SECONDS": "0.3",
        "NOTIFY_BACKOFF_MAX_SECONDS": "2",
        "NOTIFY_LEASE_SECONDS": "2",
        "NOTIFY_HTTP_TIMEOUT": "30",
    }
    purge_broker()
    proc = subprocess.Popen(
        celery_worker("--loglevel", "WARNING"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        process_stop(proc)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 45) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    state = list(Delivery.objects.values_list("purpose", "status", "attempts", "last_error"))
    pytest.fail(f"timed out waiting for {what}; deliveries: {state}")


def route(severity: str, **spec: object) -> None:
    NotificationRule.objects.update_or_create(severity=severity, team=None, tag=None, defaults=spec)


def open_incident(loader, severity: str) -> Incident:
    DetectionRule.objects.update(enabled=False)
    rule, _ = DetectionRule.objects.update_or_create(
        name=f"worker {severity}",
        defaults={"kind": "signal_failure_rate", "threshold": 5.0, "severity": severity, "enabled": True},
    )
    now = timezone.now()
    add_signals(loader, failed=5, ok=5, at=now)
    rule_evaluate(rule=rule, now=now)  # commits: the delivery task goes to Redis
    return Incident.objects.get(rule=rule)


def one_delivery(incident: Incident, status: str) -> Delivery | None:
    return Delivery.objects.filter(incident=incident, purpose="OPENED", status=status).first()


def test_a_webhook_answering_500_three_times_then_200_gets_exactly_one_message(fakes, smtp_port, active_loader):
    slack, hooks = fakes
    Channel.objects.update_or_create(name="hook", defaults={"kind": "WEBHOOK", "url": hooks.url, "secret": "s3"})
    route("LOW", channels=["hook"])
    hooks.statuses = [500, 500, 500]
    with worker(slack, smtp_port):
        incident = open_incident(active_loader, "LOW")
        delivery = wait_for(lambda: one_delivery(incident, "SENT"), "the webhook delivery to be SENT")
    assert delivery.attempts == 4
    assert [c.body["status"] for c in hooks.calls] == [500, 500, 500, 200]
    assert len(hooks.accepted()) == 1 and Delivery.objects.filter(incident=incident).count() == 1
    assert len({c.headers["X-ETL-Monitor-Delivery"] for c in hooks.calls}) == 1  # one idempotency key


def test_slack_429_is_retried_no_sooner_than_retry_after(fakes, smtp_port, active_loader):
    slack, _hooks = fakes
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    route("MEDIUM", channels=["slack"], slack_channel="#alerts-medium")
    slack.script = [("429", 2)]
    with worker(slack, smtp_port):
        incident = open_incident(active_loader, "MEDIUM")
        delivery = wait_for(lambda: one_delivery(incident, "SENT"), "the Slack delivery to be SENT")
    first, second = slack.calls_to("chat.postMessage")
    assert second.at - first.at >= 2.0
    assert len(slack.posts()) == 1 and delivery.attempts == 2
    assert delivery.external_id == f"C0MED:{slack.posts()[0]['ts']}"


def test_a_mail_server_down_then_up_gets_the_message(fakes, smtp_port, active_loader):
    slack, _hooks = fakes
    Channel.objects.update_or_create(name="email", defaults={"kind": "EMAIL", "enabled": True})
    route("LOW", channels=["email"], recipients=["oncall@example.com"])
    with worker(slack, smtp_port):
        incident = open_incident(active_loader, "LOW")
        failed = wait_for(lambda: one_delivery(incident, "FAILED"), "a failed attempt while SMTP is down")
        assert "SMTP server unreachable" in failed.last_error
        with Mailbox(smtp_port) as inbox:
            delivery = wait_for(lambda: one_delivery(incident, "SENT"), "the email once SMTP is up")
    assert delivery.attempts >= 2
    assert len(inbox.messages) == 1
    assert inbox.messages[0]["Subject"] == f"[LOW] {incident.title}"
    assert inbox.messages[0]["Message-ID"] == delivery.external_id


def test_a_permanent_error_stops_at_once_marks_the_channel_and_tells_the_admins(
    fakes, smtp_port, active_loader, admin_user
):
    slack, _hooks = fakes
    admin_user.email = "admin@example.com"
    admin_user.save()
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True, "healthy": True})
    route("MEDIUM", channels=["slack"], slack_channel="#alerts-medium")
    slack.script = [("error", "invalid_auth")]
    with Mailbox(smtp_port) as inbox, worker(slack, smtp_port):
        incident = open_incident(active_loader, "MEDIUM")
        delivery = wait_for(lambda: one_delivery(incident, "GAVE_UP"), "the delivery to give up")
        wait_for(lambda: inbox.messages, "the admins' email")
    assert delivery.attempts == 1 and delivery.last_error == "Slack: invalid_auth"
    channel = Channel.objects.get(name="slack")
    assert not channel.healthy and channel.unhealthy_reason == "Slack: invalid_auth"
    assert inbox.messages[0]["To"] == "admin@example.com"
    assert "slack is not working" in inbox.messages[0]["Subject"]
    assert incident.events.filter(kind="NOTIFY_FAILED").exists()


@pytest.mark.parametrize("arrived", [True, False], ids=["slack-stored-it", "slack-never-got-it"])
def test_a_worker_killed_mid_send_delivers_once_after_restart(fakes, smtp_port, active_loader, arrived):
    slack, _hooks = fakes
    Channel.objects.update_or_create(name="slack", defaults={"kind": "SLACK", "enabled": True})
    route("MEDIUM", channels=["slack"], slack_channel="#alerts-medium")
    release = threading.Event()
    slack.script = [("hang" if arrived else "drop", release)]
    with worker(slack, smtp_port) as first:
        incident = open_incident(active_loader, "MEDIUM")
        wait_for(lambda: slack.calls_to("chat.postMessage"), "the worker to start sending")
        assert one_delivery(incident, "SENDING") is not None
        os.killpg(first.pid, signal.SIGKILL)  # mid-send: the request is open, the outcome unknown
        first.wait(timeout=10)
    release.set()
    with worker(slack, smtp_port):
        lease = Delivery.objects.get(incident=incident).lease_until
        wait_for(lambda: timezone.now() > lease, "the lease to expire", timeout=10)
        counts = deliveries_recover()  # what the beat sweep does every 30 s
        delivery = wait_for(lambda: one_delivery(incident, "SENT"), "the delivery after the restart")
    assert counts == (
        {"recovered": 0, "found_sent": 1, "enqueued": 0}
        if arrived
        else {"recovered": 1, "found_sent": 0, "enqueued": 0}
    )
    assert len(slack.posts()) == 1, "exactly one message in the channel"
    assert len(slack.calls_to("chat.postMessage")) == (1 if arrived else 2)
    assert not delivery.possible_duplicate
    assert delivery.external_id == f"C0MED:{slack.posts()[0]['ts']}"
    assert dt.timedelta(0) <= timezone.now() - delivery.sent_at < dt.timedelta(minutes=2)
