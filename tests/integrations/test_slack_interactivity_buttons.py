"""Which buttons the incident message shows: the action buttons only with ``SLACK_SIGNING_SECRET``
set and only those the incident's state allows; links otherwise, and always on an incoming webhook
(its message cannot be updated, so a click could never show its effect)."""

from __future__ import annotations

import pytest

from incidents.services import incident_acknowledge, incident_close, incident_resolve
from integrations.models import Channel, ChannelKind, Purpose
from integrations.notifications.payloads import Message
from integrations.notifications.transports import transport_for
from tests.integrations.conftest import incident_open_for

LINK = {
    "type": "button",
    "text": {"type": "plain_text", "text": "View incident"},
    "action_id": "open_incident",
}


def buttons(channel_kind: str, incident, purpose: str = Purpose.OPENED) -> list[dict]:
    transport = transport_for(Channel(name="c", kind=channel_kind))
    payload = transport.render(Message(purpose, incident))
    [actions] = [block for block in payload["blocks"] if block["type"] == "actions"]
    return actions["elements"]


def labels(elements: list[dict]) -> list[str]:
    return [element["text"]["text"] for element in elements]


def test_without_a_signing_secret_the_buttons_are_links(active_loader, settings):
    settings.SLACK_SIGNING_SECRET = ""
    incident = incident_open_for(active_loader)

    [link] = buttons(ChannelKind.SLACK, incident)

    assert link == {**LINK, "url": f"http://127.0.0.1:8000/admin/incidents/incident/{incident.pk}/change/"}


def test_with_a_signing_secret_an_open_incident_offers_every_action_then_its_links(active_loader, settings):
    settings.SLACK_SIGNING_SECRET = "s3cr3t"
    settings.GRAFANA_URL = "https://grafana.example.com"
    incident = incident_open_for(active_loader)

    ack, resolve, escalate, silence, *links = buttons(ChannelKind.SLACK, incident)

    value = str(incident.pk)
    assert ack == {
        "type": "button",
        "text": {"type": "plain_text", "text": "Acknowledge"},
        "action_id": "etl_ack",
        "value": value,
        "style": "primary",
    }
    assert [(b["action_id"], b["value"], "url" in b) for b in (resolve, escalate, silence)] == [
        ("etl_resolve", value, False),
        ("etl_escalate", value, False),
        ("etl_silence_1h", value, False),
    ]
    assert labels([resolve, escalate, silence]) == ["Resolve", "Escalate", "Silence 1 h"]
    assert labels(links) == ["View incident", "View dashboard"] and all("url" in link for link in links)


@pytest.mark.parametrize(
    ("steps", "shown"),
    [
        (["acknowledge"], ["Resolve", "Silence 1 h", "View incident"]),
        (["resolve"], ["View incident"]),
        (["close"], ["View incident"]),
    ],
)
def test_the_actions_follow_the_incident_state(steps, shown, active_loader, operator, settings):
    settings.SLACK_SIGNING_SECRET = "s3cr3t"
    incident = incident_open_for(active_loader)
    act = {"acknowledge": incident_acknowledge, "resolve": incident_resolve, "close": incident_close}
    for step in steps:
        incident = act[step](user=operator, incident=incident)

    assert labels(buttons(ChannelKind.SLACK, incident, Purpose.UPDATED)) == shown


def test_an_incoming_webhook_message_keeps_its_links_with_a_signing_secret(active_loader, settings):
    settings.SLACK_SIGNING_SECRET = "s3cr3t"
    incident = incident_open_for(active_loader)

    assert labels(buttons(ChannelKind.SLACK_WEBHOOK, incident)) == ["View incident"]


def test_the_message_says_who_acknowledged_and_when(active_loader, operator, settings):
    incident = incident_acknowledge(user=operator, incident=incident_open_for(active_loader))
    transport = transport_for(Channel(name="c", kind=ChannelKind.SLACK))

    blocks = transport.render(Message(Purpose.ACKNOWLEDGED, incident))["blocks"]

    [line] = [b["elements"][0]["text"] for b in blocks if b["type"] == "context" and "by" in b["elements"][0]["text"]]
    assert line == f"Acknowledged by otto-operator at {incident.acknowledged_at:%H:%M} UTC"


def test_an_incident_without_loader_or_rule_offers_no_silence(active_loader, settings):
    settings.SLACK_SIGNING_SECRET = "s3cr3t"
    incident = incident_open_for(active_loader)
    incident.loader = None
    incident.save()

    assert labels(buttons(ChannelKind.SLACK, incident)) == ["Acknowledge", "Resolve", "Escalate", "View incident"]
