"""The Alertmanager webhook opens the incidents of new alerts in bulk (incidents.detection.incidents_open):
the same answer, incidents, timeline and deliveries as one alert after the other — with a silenced
alert, a fingerprint twice in one post, one already open and a resolution — and a post of the
cap (200 alerts) in a few queries per chunk, not a few dozen per alert."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from django.core.management.color import no_style
from django.db import connection, transaction
from django.utils import timezone

from incidents.models import Incident, IncidentEvent, Silence
from integrations.models import Delivery, IncidentNotification
from tests.integrations.test_alertmanager import TOKEN, alert, payload, post


@pytest.fixture(autouse=True)
def routed(settings: Any, db: Any) -> None:
    settings.ALERTMANAGER_WEBHOOK_TOKEN = TOKEN
    settings.NOTIFICATIONS_ENABLED = True
    settings.SLACK_BOT_TOKEN = "xoxb-test"  # deliveries are only created (no after-commit send)


def _clock_free(payload: dict[str, Any]) -> Any:
    """The payload with its clock readings (``detected_at``: the second the post was handled) as a
    placeholder, so two posts a second apart compare equal."""
    return json.loads(re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>", json.dumps(payload)))


def _outcome(answer: dict[str, Any]) -> dict[str, Any]:
    incidents = {}
    for incident in Incident.objects.order_by("pk"):
        incidents[incident.fingerprint] = {
            "incident": (incident.pk, incident.status, incident.suppressed, incident.title, incident.occurrences),
            "timeline": [(e.kind, e.message, e.data) for e in incident.events.order_by("pk")],
            "notified": list(IncidentNotification.objects.filter(incident=incident).values_list("rule_id", "tier")),
            "deliveries": [
                (d.channel.name, d.target, d.purpose, _clock_free(d.payload))
                for d in Delivery.objects.filter(incident=incident).order_by("channel__name", "target")
            ],
        }
    return {"answer": answer, "incidents": incidents}


def _apply(settings: Any, chunk: int, body: dict[str, Any]) -> dict[str, Any]:
    settings.INCIDENT_OPEN_CHUNK_SIZE = chunk
    with transaction.atomic():
        with connection.cursor() as cursor:  # both posts number their rows alike
            for sql in connection.ops.sequence_reset_sql(
                no_style(), [Incident, IncidentEvent, IncidentNotification, Delivery]
            ):
                cursor.execute(sql)
        response = post(body)
        assert response.status_code == 200
        outcome = _outcome(response.json())
        transaction.set_rollback(True)
    return outcome


def test_a_post_opens_in_bulk_what_it_opens_one_by_one(settings):
    now = timezone.now()
    Silence.objects.create(
        severity="LOW", starts_at=now - dt.timedelta(hours=1), ends_at=now + dt.timedelta(hours=1), comment="x"
    )
    assert post(payload(alert("00000000000000aa", severity="critical"))).status_code == 200  # already open
    body = payload(
        alert("0000000000000001", severity="critical", instance="https://a.example.org"),
        alert("0000000000000002", severity="low", instance="https://b.example.org"),  # silenced
        alert("0000000000000004", severity="critical", instance="https://d.example.org"),
        alert("00000000000000aa", severity="critical", starts="2026-05-04T12:00:00Z"),  # fires again
        alert("00000000000000bb", status="resolved"),  # nothing open
        # Twice in one post: one after the other (last, so that both ways number the incidents alike).
        alert("0000000000000003", severity="warning", instance="https://c.example.org"),
        alert("0000000000000003", severity="warning", instance="https://c.example.org"),
    )
    one_by_one = _apply(settings, 0, body)
    bulk = _apply(settings, 2, body)
    assert bulk == one_by_one
    assert bulk["answer"]["counts"] == {
        "opened": 3,
        "opened (suppressed)": 1,
        "unchanged": 1,
        "refired": 1,
        "nothing open": 1,
    }
    assert any(entries["deliveries"] for entries in bulk["incidents"].values())


def test_a_post_of_the_cap_costs_a_few_queries_per_chunk(settings, django_assert_max_num_queries):
    body = payload(*(alert(f"{n:016x}", instance=f"https://shop-{n}.example.org") for n in range(200)))
    with django_assert_max_num_queries(80):
        response = post(body)
    assert response.json()["counts"] == {"opened": 200}
    assert Delivery.objects.count() > 0
