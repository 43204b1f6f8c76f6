"""Escalating by hand from the incident page and the API: the same step as the escalation timeout
(routing's ``incident_escalate``), recorded with who asked and from where; refused, with nothing
changed, for a Viewer, an incident that is not open, or one at its rule's last tier."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from incidents.models import Incident
from incidents.services import incident_acknowledge
from integrations.models import Delivery, IncidentNotification, NotificationRule


@pytest.fixture(autouse=True)
def _two_tiers(settings, db) -> None:
    # Deliveries are only created here (no after-commit send): no request leaves the test.
    settings.SLACK_BOT_TOKEN = "xoxb-test"
    NotificationRule.objects.filter(severity="CRITICAL").update(
        escalation_tiers=[{"channels": ["email"], "recipients": ["lead@example.com"]}], escalation_repeat=0
    )


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def escalated_to(incident: Incident) -> list[tuple[str, str]]:
    return [(d.channel.name, d.target) for d in Delivery.objects.filter(incident=incident, purpose="ESCALATED")]


def tier(incident: Incident) -> int:
    return IncidentNotification.objects.get(incident=incident).tier


# --- the API -------------------------------------------------------------------------------------------


def test_an_operator_escalates_over_the_api_and_the_timeline_says_who_and_from_where(fire, operator):
    incident = fire("CRITICAL")
    response = api(operator).post(f"/api/v1/incidents/{incident.pk}/escalate/")
    assert response.status_code == 200
    assert response.json()["id"] == incident.pk
    assert escalated_to(incident) == [("email", "lead@example.com")]
    event = incident.events.get(kind="ESCALATED")
    assert (event.actor, event.message) == (operator, f"Escalated by {operator} from the API: tier 1 notified.")
    assert any(e["kind"] == "ESCALATED" for e in response.json()["events"])


@pytest.mark.parametrize(
    ("prepare", "status", "says"),
    [
        ("acknowledged", 409, "is acknowledged; only an open one can be escalated"),
        ("last tier", 409, "has reached the last tier of its notification rule"),
        ("no rule", 409, "was routed to no notification rule"),
    ],
)
def test_what_cannot_be_escalated_is_a_409_that_says_why_and_changes_nothing(fire, operator, prepare, status, says):
    incident = fire("CRITICAL")
    if prepare == "acknowledged":
        incident_acknowledge(user=operator, incident=incident)
    elif prepare == "last tier":
        assert api(operator).post(f"/api/v1/incidents/{incident.pk}/escalate/").status_code == 200
    else:
        IncidentNotification.objects.filter(incident=incident).update(rule=None)
    before = (list(incident.events.values_list("pk", flat=True)), Delivery.objects.count())
    response = api(operator).post(f"/api/v1/incidents/{incident.pk}/escalate/")
    assert response.status_code == status
    assert says in str(response.json())
    assert (list(incident.events.values_list("pk", flat=True)), Delivery.objects.count()) == before


def test_a_viewer_is_refused_and_nothing_is_escalated(fire, viewer):
    incident = fire("CRITICAL")
    response = api(viewer).post(f"/api/v1/incidents/{incident.pk}/escalate/")
    assert response.status_code == 403
    assert "Your role does not allow you to escalate incidents." in str(response.json())
    assert tier(incident) == 0 and escalated_to(incident) == []


def test_an_unknown_incident_is_a_404_and_nobody_signed_in_is_refused(fire, operator):
    incident = fire("CRITICAL")
    assert api(operator).post("/api/v1/incidents/999999/escalate/").status_code == 404
    assert APIClient().post(f"/api/v1/incidents/{incident.pk}/escalate/").status_code in (401, 403)
    assert tier(incident) == 0


# --- the incident page ------------------------------------------------------------------------------------


def change_url(incident: Incident) -> str:
    return reverse("admin:incidents_incident_change", args=[incident.pk])


def escalate_url(incident: Incident) -> str:
    return reverse("admin:incidents_incident_do", args=[incident.pk, "escalate"])


def test_the_page_offers_escalate_now_to_an_operator_while_a_tier_is_left(fire, operator):
    incident = fire("CRITICAL")
    client = page(operator)
    assert b'id="do-escalate"' in client.get(change_url(incident)).content

    done = client.post(escalate_url(incident), {"comment": "Payments team is asleep, paging the lead"}, follow=True)
    assert "escalated, tier 1 of its notification rule is notified" in done.content.decode()
    assert escalated_to(incident) == [("email", "lead@example.com")]
    event = incident.events.get(kind="ESCALATED")
    assert event.message == f"Escalated by {operator} from the incident page: tier 1 notified."
    # What was typed in the comment box is kept on the timeline, not dropped.
    assert incident.events.get(kind="COMMENTED").message == "Payments team is asleep, paging the lead"
    # The last tier reached (no repeats): the button is gone.
    assert b'id="do-escalate"' not in client.get(change_url(incident)).content


def test_the_page_offers_no_escalate_to_a_viewer_nor_on_an_acknowledged_incident(fire, operator, viewer):
    incident = fire("CRITICAL")
    assert b'id="do-escalate"' not in page(viewer).get(change_url(incident)).content
    refused = page(viewer).post(escalate_url(incident), follow=True)
    assert "Your role does not allow you to escalate incidents." in refused.content.decode()
    assert tier(incident) == 0 and not incident.events.filter(kind="ESCALATED").exists()

    incident_acknowledge(user=operator, incident=incident)
    assert b'id="do-escalate"' not in page(operator).get(change_url(incident)).content
