"""The Alertmanager webhook's limits and hostile text: a cap on alerts per post (413, nothing
applied), control characters in labels and annotations (a NUL was a 500 on PostgreSQL), and titles
that stay one line so the email of a CRITICAL incident is sent (a newline in the subject made
Django refuse it and the delivery gave up).

Payloads are shaped as Alertmanager 0.25 writes them (version 4); emails go to the local SMTP
server of tests/integrations/conftest.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from incidents.models import Incident
from integrations.models import Delivery, DeliveryStatus
from integrations.notifications.outbox import delivery_send
from tests.integrations.test_alertmanager import TOKEN, WEBHOOK, alert, payload, post
from tests.mailbox import Mailbox

CRITICAL_ONCALL = "oncall-team@company.com"  # the seeded CRITICAL rule's first recipient


@pytest.fixture(autouse=True)
def configured(settings: Any, db: Any) -> None:
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.SLACK_BOT_TOKEN = ""  # email is what these tests read


def many(count: int) -> dict[str, Any]:
    return payload(*(alert(f"{n:016x}", instance=f"https://shop-{n}.example.org") for n in range(count)))


# --- how many alerts ------------------------------------------------------------------------------------------


def test_a_post_with_more_alerts_than_the_cap_is_refused_whole_with_413(settings):
    settings.NOTIFICATIONS_ENABLED = False
    assert settings.ALERTMANAGER_MAX_ALERTS == 200  # the default

    response = post(many(201))

    assert response.status_code == 413
    answer = response.json()
    assert answer["detail"] == (
        "alerts: 201 alerts in one post; this webhook accepts at most 200 (ALERTMANAGER_MAX_ALERTS): "
        "set max_alerts: 200 in the receiver's webhook_config"
    )
    assert list(answer["errors"]) == ["alerts"]
    assert Incident.objects.count() == 0


def test_a_post_of_exactly_the_cap_is_applied(settings):
    settings.NOTIFICATIONS_ENABLED = False
    settings.ALERTMANAGER_MAX_ALERTS = 5

    response = post(many(5))

    assert response.status_code == 200
    assert response.json()["counts"] == {"opened": 5}
    assert post(many(6)).status_code == 413
    assert Incident.objects.count() == 5


def test_a_body_declared_over_the_size_cap_is_refused_before_it_is_read():
    body = json.dumps(payload(alert(annotations={"description": "x" * (1024 * 1024)}))).encode()

    response = Client().post(WEBHOOK, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 413
    assert response.json() == {"detail": "Payload too large: the limit is 1048576 bytes (1 MiB)."}
    assert Incident.objects.count() == 0


def test_a_body_nested_too_deep_to_parse_is_a_bad_request():
    response = post(None, raw=b"[" * 100_000)

    assert response.status_code == 400
    assert response.json() == {"detail": "JSON nested deeper than 64 levels."}


# --- control characters -----------------------------------------------------------------------------------------


def test_control_characters_in_labels_and_annotations_are_dropped_and_the_alert_applied(settings):
    settings.NOTIFICATIONS_ENABLED = False
    hostile = alert(
        annotations={
            "summary": "Disk\x00 full on\r\ndb-1\x1b[31m",
            "description": "Line one\x00\r\nLine two\x07",
            "runbook_url": "https://wiki.example.com/disk\x00",
        },
        device="/dev/sda\x00",
    )

    response = post(payload(hostile))

    assert response.status_code == 200
    assert response.json()["counts"] == {"opened": 1}
    incident = Incident.objects.get()
    assert incident.title == "Disk full on db-1[31m"
    assert incident.description == "Line one\nLine two"
    assert incident.suggestion == "Runbook: https://wiki.example.com/disk"
    assert "device=/dev/sda" in incident.subject
    stored = json.dumps(incident.metrics)
    assert "\\u0000" not in stored and "\\u0007" not in stored and "\\u001b" not in stored
    assert incident.metrics["labels"]["device"] == "/dev/sda"


@pytest.mark.django_db(transaction=True)
def test_a_nul_in_an_annotation_is_no_server_error_on_postgresql(require_postgres, settings):
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.NOTIFICATIONS_ENABLED = False

    response = post(payload(alert(annotations={"summary": "Shop\x00 down", "description": "a\x00b"})))

    assert response.status_code == 200
    assert Incident.objects.get().title == "Shop down"


# --- titles become email subjects --------------------------------------------------------------------------------


def test_a_summary_with_line_breaks_still_gets_its_critical_email_out(
    mailbox: Mailbox, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_ENABLED = True
    critical = alert(annotations={"summary": "Payments down\r\nBcc: everyone@example.com\n"}, severity="critical")

    with django_capture_on_commit_callbacks(execute=True):  # the deliveries are sent after commit
        response = post(payload(critical))

    assert response.status_code == 200
    [message] = mailbox.to(CRITICAL_ONCALL)
    assert message["Subject"] == "[CRITICAL] Payments down Bcc: everyone@example.com"
    assert message["Bcc"] is None
    [email] = Delivery.objects.filter(channel__name="email")
    assert email.status == DeliveryStatus.SENT


def test_an_email_stored_with_a_line_break_in_its_subject_is_still_sent_on_one_line(
    mailbox: Mailbox, open_incident, settings
):
    """Defensive: a delivery rendered before titles were cleaned (or by any other path) is put on
    one line by the email transport itself."""
    incident = open_incident(send=False)
    email = Delivery.objects.get(incident=incident, channel__name="email")
    email.payload = {**email.payload, "subject": "[HIGH] SALES-DAILY failing\r\nsee the runbook"}
    email.save(update_fields=["payload"])

    delivery_send(email.pk)

    [message] = mailbox.to("platform-team@company.com")
    assert message["Subject"] == "[HIGH] SALES-DAILY failing see the runbook"
    email.refresh_from_db()
    assert email.status == DeliveryStatus.SENT
