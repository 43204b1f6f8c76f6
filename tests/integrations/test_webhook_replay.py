"""The Jira webhook's replay protection, bound to what Jira signs: the body (its SHA-256 is stored,
unique) and the event's own ``timestamp`` inside it (stale or future events are refused). The
delivery identifier header is not signed, so a captured body sent again under a new identifier must
still be recognised. Also: the shared secret may come in a header instead of the query string.

Jira plays its part through the fake of tests/integrations/jira_fake.py, with the real ``jira``
client; the webhook is posted over Django's test client exactly as Jira Cloud posts it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from incidents.models import EventKind, Incident
from integrations.jira import FUTURE_SKEW_SECONDS, jira_receipts_prune
from integrations.models import JiraWebhookReceipt
from tests.conftest import at_once
from tests.integrations import test_jira
from tests.integrations.jira_fake import FakeJira
from tests.integrations.test_jira import SECRET, WEBHOOK, breach_ends, post_webhook

S = dt.timedelta(seconds=1)

# The fixtures of the Jira tests: a fake Jira site with ETL Monitor configured for it, detection
# firing on SALES-DAILY.
jira = test_jira.jira
fire = test_jira.fire


def signed(body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}


def post_raw(body: bytes, *, delivery_id: str, headers: dict[str, str] | None = None) -> Any:
    """POST exactly these bytes, signed, under this delivery identifier (what a replay does)."""
    all_headers = {"X-Atlassian-Webhook-Identifier": delivery_id, **signed(body), **(headers or {})}
    return Client().post(WEBHOOK, data=body, content_type="application/json", headers=all_headers)


def done_in_jira(jira: FakeJira, key: str = "OPS-1", *, age_seconds: float = 0) -> dict[str, Any]:
    """Someone moves the ticket to Done in Jira: the event Jira sends (``timestamp`` set back by
    ``age_seconds``, as a captured event is when it is replayed later)."""
    jira.set_status(key, "Done")
    payload = jira.webhook_payload("jira:issue_updated", key)
    payload["timestamp"] = int((time.time() - age_seconds) * 1000)
    return payload


# --- replays -----------------------------------------------------------------------------------------------


def test_a_captured_done_event_replayed_under_a_new_identifier_does_not_resolve_the_reopened_incident(
    jira: FakeJira, fire
):
    t0 = timezone.now()
    incident = fire(t0)
    body = json.dumps(done_in_jira(jira)).encode()
    first = post_raw(body, delivery_id="wh-1")
    assert first.json() == {"status": "applied", "reason": "incident resolved"}
    breach_ends(t0 + 400 * S)
    reopened = fire(t0 + 420 * S)  # detection sees new failures: the incident reopens
    assert reopened.pk == incident.pk and reopened.status == "OPEN"
    events = reopened.events.count()

    replay = post_raw(body, delivery_id="wh-2-made-up-by-the-attacker")

    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    reopened.refresh_from_db()
    assert reopened.status == "OPEN"
    assert reopened.events.count() == events
    [receipt] = JiraWebhookReceipt.objects.all()
    assert receipt.key == "wh-1"
    assert receipt.body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_replay_without_an_identifier_is_recognised_by_its_body(jira: FakeJira, fire):
    incident = fire(timezone.now())
    body = json.dumps(done_in_jira(jira)).encode()
    Client().post(WEBHOOK, data=body, content_type="application/json", headers=signed(body))

    again = Client().post(WEBHOOK, data=body, content_type="application/json", headers=signed(body))

    assert again.json() == {"status": "duplicate"}
    assert Incident.objects.get(pk=incident.pk).events.filter(kind=EventKind.RESOLVED).count() == 1


def test_jira_retrying_a_delivery_under_its_identifier_is_still_a_duplicate(jira: FakeJira, fire):
    fire(timezone.now())
    jira.add_comment("OPS-1", "Restarted the extract")
    payload = jira.webhook_payload("comment_created", "OPS-1")

    first = post_webhook(payload, delivery_id="wh-7")
    retried = post_webhook(payload, delivery_id="wh-7")

    assert first.json()["status"] == "applied"
    assert retried.json() == {"status": "duplicate"}


# --- the time window ----------------------------------------------------------------------------------------


def test_an_event_older_than_the_window_is_refused_as_stale_and_changes_nothing(jira: FakeJira, fire, settings):
    settings.JIRA_WEBHOOK_MAX_AGE_SECONDS = 300
    incident = fire(timezone.now())
    body = json.dumps(done_in_jira(jira, age_seconds=400)).encode()

    response = post_raw(body, delivery_id="wh-old")

    assert response.status_code == 400
    answer = response.json()
    assert list(answer["errors"]) == ["timestamp"]
    assert answer["detail"].startswith("timestamp: the event is 4")  # 400 s, give or take the test's own time
    assert "older than 300 s (JIRA_WEBHOOK_MAX_AGE_SECONDS)" in answer["detail"]
    assert Incident.objects.get(pk=incident.pk).status == "OPEN"
    assert JiraWebhookReceipt.objects.count() == 0


def test_an_event_from_too_far_in_the_future_is_refused(jira: FakeJira, fire):
    incident = fire(timezone.now())
    body = json.dumps(done_in_jira(jira, age_seconds=-(FUTURE_SKEW_SECONDS + 60))).encode()

    response = post_raw(body, delivery_id="wh-future")

    assert response.status_code == 400
    assert "in the future" in response.json()["detail"]
    assert Incident.objects.get(pk=incident.pk).status == "OPEN"
    assert JiraWebhookReceipt.objects.count() == 0


@pytest.mark.parametrize("timestamp", [None, "yesterday", 1.5e30, True], ids=["missing", "text", "huge", "bool"])
def test_an_event_without_a_usable_timestamp_is_refused_naming_the_field(jira: FakeJira, fire, timestamp):
    incident = fire(timezone.now())
    payload = done_in_jira(jira)
    if timestamp is None:
        del payload["timestamp"]
    else:
        payload["timestamp"] = timestamp

    response = post_raw(json.dumps(payload).encode(), delivery_id="wh-no-time")

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["timestamp"]
    assert Incident.objects.get(pk=incident.pk).status == "OPEN"
    assert JiraWebhookReceipt.objects.count() == 0


def test_an_event_within_the_window_is_applied(jira: FakeJira, fire, settings):
    settings.JIRA_WEBHOOK_MAX_AGE_SECONDS = 300
    incident = fire(timezone.now())
    body = json.dumps(done_in_jira(jira, age_seconds=240)).encode()  # a retry Jira sent four minutes on

    response = post_raw(body, delivery_id="wh-late-retry", headers={"X-Atlassian-Webhook-Retry": "3"})

    assert response.json() == {"status": "applied", "reason": "incident resolved"}
    assert Incident.objects.get(pk=incident.pk).status == "RESOLVED"


# --- keeping the receipts -------------------------------------------------------------------------------------


def test_receipts_are_kept_as_long_as_a_replay_could_pass_the_window_and_pruned_after(jira: FakeJira, fire, settings):
    settings.JIRA_WEBHOOK_MAX_AGE_SECONDS = 3600
    settings.JIRA_WEBHOOK_RECEIPT_DAYS = 0  # retention alone would drop it at once: the window keeps it
    fire(timezone.now())
    post_raw(json.dumps(done_in_jira(jira)).encode(), delivery_id="wh-1")
    received = JiraWebhookReceipt.objects.get().received_at
    keep = dt.timedelta(seconds=3600 + FUTURE_SKEW_SECONDS)

    assert jira_receipts_prune(now=received + keep - S) == 0
    assert JiraWebhookReceipt.objects.count() == 1
    assert jira_receipts_prune(now=received + keep + S) == 1
    assert JiraWebhookReceipt.objects.count() == 0


def test_receipts_stay_for_the_retention_days_when_that_is_longer(jira: FakeJira, fire, settings):
    settings.JIRA_WEBHOOK_RECEIPT_DAYS = 30
    fire(timezone.now())
    post_raw(json.dumps(done_in_jira(jira)).encode(), delivery_id="wh-1")
    received = JiraWebhookReceipt.objects.get().received_at

    assert jira_receipts_prune(now=received + dt.timedelta(days=29)) == 0
    assert jira_receipts_prune(now=received + dt.timedelta(days=31)) == 1


def test_a_replay_after_its_receipt_was_pruned_is_stale(jira: FakeJira, fire, settings):
    settings.JIRA_WEBHOOK_MAX_AGE_SECONDS = 1
    settings.JIRA_WEBHOOK_RECEIPT_DAYS = 0
    t0 = timezone.now()
    incident = fire(t0)
    body = json.dumps(done_in_jira(jira)).encode()
    assert post_raw(body, delivery_id="wh-1").json()["status"] == "applied"
    breach_ends(t0 + 400 * S)
    reopened = fire(t0 + 420 * S)
    time.sleep(1.5)  # the event is now older than the window
    jira_receipts_prune(now=timezone.now() + dt.timedelta(hours=1))
    assert JiraWebhookReceipt.objects.count() == 0

    replay = post_raw(body, delivery_id="wh-2")

    assert replay.status_code == 400
    assert Incident.objects.get(pk=incident.pk).status == reopened.status == "OPEN"


def test_the_scheduled_prune_task_drops_receipts_past_their_retention(db, settings):
    from celery import current_app

    from etl_monitor.schedule import BEAT_SCHEDULE

    settings.JIRA_WEBHOOK_RECEIPT_DAYS = 30
    [entry] = [e for e in BEAT_SCHEDULE.values() if e["task"] == "integrations.tasks.jira_receipts_prune"]
    for key, days in (("old", 31), ("recent", 29)):
        JiraWebhookReceipt.objects.create(
            key=key, body_sha256=hashlib.sha256(key.encode()).hexdigest(), event="comment_created", issue_key="OPS-1"
        )
        JiraWebhookReceipt.objects.filter(key=key).update(received_at=timezone.now() - dt.timedelta(days=days))

    current_app.tasks[entry["task"]].apply()

    assert list(JiraWebhookReceipt.objects.values_list("key", flat=True)) == ["recent"]


# --- the secret in a header ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{"X-ETL-Monitor-Secret": SECRET}, {"Authorization": f"Bearer {SECRET}"}],
    ids=["x-etl-monitor-secret", "authorization-bearer"],
)
def test_the_secret_may_come_in_a_header_instead_of_the_query_string(jira: FakeJira, fire, headers):
    incident = fire(timezone.now())
    jira.add_comment("OPS-1", "Looking into it")
    body = json.dumps(jira.webhook_payload("comment_created", "OPS-1")).encode()

    response = Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers)

    assert response.status_code == 200
    assert response.json() == {"status": "applied", "reason": "comment added to the timeline"}
    assert incident.events.filter(kind=EventKind.COMMENTED).count() == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"X-ETL-Monitor-Secret": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": SECRET},
    ],
    ids=["wrong-header", "wrong-bearer", "other-scheme", "no-scheme"],
)
def test_a_wrong_secret_in_a_header_is_refused(jira: FakeJira, fire, headers):
    fire(timezone.now())
    jira.add_comment("OPS-1", "Looking into it")
    body = json.dumps(jira.webhook_payload("comment_created", "OPS-1")).encode()

    response = Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers)

    assert response.status_code == 401
    assert JiraWebhookReceipt.objects.count() == 0


def test_the_query_string_secret_still_works(jira: FakeJira, fire):
    fire(timezone.now())
    jira.add_comment("OPS-1", "Looking into it")
    body = json.dumps(jira.webhook_payload("comment_created", "OPS-1")).encode()

    response = Client().post(f"{WEBHOOK}?secret={SECRET}", data=body, content_type="application/json")

    assert response.json()["status"] == "applied"


# --- PostgreSQL: replays racing each other -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_same_signed_body_sent_at_once_under_different_identifiers_applies_once(
    require_postgres, jira: FakeJira, fire
):
    incident = fire(timezone.now())
    body = json.dumps(done_in_jira(jira)).encode()
    identifiers = [f"wh-{n}" for n in range(4)]  # list.pop is atomic: one each

    answers = at_once(lambda: post_raw(body, delivery_id=identifiers.pop()).json()["status"], 4)

    assert sorted(answers) == ["applied", "duplicate", "duplicate", "duplicate"]
    assert Incident.objects.get(pk=incident.pk).events.filter(kind=EventKind.RESOLVED).count() == 1
    assert JiraWebhookReceipt.objects.count() == 1
