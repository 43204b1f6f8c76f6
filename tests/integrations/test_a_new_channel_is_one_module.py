"""Adding a channel is one module plus its tests.

The pager below is a whole channel kind, written the way ``integrations.notifications.transports``
asks: a ``Transport`` subclass registered with ``transport_register`` that says where a tier sends
(``targets``), what a message looks like (``render``) and how it goes out (``send``, here a POST to
a local server). Nothing else changes: a notification rule routes incidents to it, the outbox sends
and retries its deliveries, follow-ups reach it, and the test action sends through it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incidents.models import EventKind, Incident
from incidents.services import incident_resolve
from integrations.models import Channel, ChannelKind, Delivery, DeliveryStatus, NotificationRule, Purpose
from integrations.notifications import transports
from integrations.notifications.outbox import channel_test, delivery_send
from integrations.notifications.payloads import Message
from integrations.notifications.rules import notification_rule_save
from integrations.notifications.transports import Permanent, Transient, Transport, transport_register


class PagerTransport(Transport):
    """A pager service: one POST per message to the channel's URL; the answer names the page."""

    kind = "PAGER"
    test_prompt = "a pager URL"

    def configured(self) -> str | None:
        return None if self.channel.url else "no pager URL"

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return [self.channel.url]

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return self.channel.url

    def render(self, message: Message) -> dict[str, Any]:
        return {"summary": message.text, "detail": message.follow_up, "severity": message.context["severity"]}

    def send(self, delivery: Delivery) -> str:
        try:
            response = requests.post(delivery.target, json=delivery.payload, timeout=5)
        except requests.RequestException as exc:
            raise Transient(f"pager unreachable: {type(exc).__name__}") from exc
        if response.status_code >= 500:
            raise Transient(f"pager: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Permanent(f"pager: HTTP {response.status_code}")
        return response.json()["page"]


class Pager:
    """The pager service on pytest-httpserver: keeps every page; ``failures_left`` answers 503 first."""

    def __init__(self, server: HTTPServer) -> None:
        self.url = server.url_for("/pages")
        self.pages: list[dict[str, Any]] = []
        self.failures_left = 0
        self._ids = itertools.count(1)
        server.expect_request("/pages", method="POST").respond_with_handler(self._page)

    def _page(self, request: Request) -> Response:
        if self.failures_left:
            self.failures_left -= 1
            return Response("try later", status=503)
        self.pages.append(request.get_json())
        return Response(json.dumps({"page": f"P{next(self._ids)}"}), content_type="application/json")


@pytest.fixture
def pager(db: None, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pager]:
    """The pager kind registered as a channel module registers itself (the registry is restored
    afterwards), a ``pager`` channel, and the seeded HIGH rule routing to it."""
    monkeypatch.setattr(transports, "_TRANSPORTS", dict(transports._TRANSPORTS))
    transport_register(PagerTransport)
    service = Pager(httpserver)
    Channel.objects.create(name="pager", kind=PagerTransport.kind, url=service.url)
    yield service


def route_high_to_pager(admin_user: Any) -> None:
    """Through the rule service, which checks every channel a rule names with its transport."""
    rule = NotificationRule.objects.get(severity="HIGH", team=None, tag=None)
    notification_rule_save(user=admin_user, data={"channels": ["pager"]}, rule=rule)


def test_it_pages_an_opened_incident_through_the_outbox(pager: Pager, open_incident, admin_user):
    route_high_to_pager(admin_user)

    incident = open_incident()

    [page] = pager.pages
    assert page == {"summary": f"[HIGH] {incident.title}", "detail": "", "severity": "HIGH"}
    delivery = Delivery.objects.get(incident=incident, channel__name="pager")
    assert (delivery.status, delivery.external_id, delivery.target) == (DeliveryStatus.SENT, "P1", pager.url)
    notified = incident.events.filter(kind=EventKind.NOTIFIED).values_list("message", flat=True)
    assert [message for message in notified if "pager" in message] == [f"Opened sent via pager to {pager.url}"]


def test_its_failures_are_retried_by_the_outbox(pager: Pager, open_incident, admin_user):
    route_high_to_pager(admin_user)
    pager.failures_left = 1

    incident = open_incident()

    delivery = Delivery.objects.get(incident=incident, channel__name="pager")
    assert (delivery.status, delivery.last_error) == (DeliveryStatus.FAILED, "pager: HTTP 503")
    delivery_send(delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, len(pager.pages)) == (DeliveryStatus.SENT, 2, 1)


def test_it_hears_the_resolution_of_what_it_paged(
    pager: Pager, open_incident, admin_user, operator, django_capture_on_commit_callbacks
):
    route_high_to_pager(admin_user)
    incident = open_incident()

    with django_capture_on_commit_callbacks(execute=True):
        incident_resolve(user=operator, incident=Incident.objects.get(pk=incident.pk))

    _opened, resolved = pager.pages
    assert resolved == {
        "summary": f"Resolved: [HIGH] {incident.title}",
        "detail": "Resolved by otto-operator.",
        "severity": "HIGH",
    }
    delivery = Delivery.objects.get(incident=incident, channel__name="pager", purpose=Purpose.RESOLVED)
    assert delivery.root.purpose == Purpose.OPENED and delivery.status == DeliveryStatus.SENT


def test_the_channel_test_sends_through_it(pager: Pager, admin_user):
    delivery = channel_test(user=admin_user, channel=Channel.objects.get(name="pager"))

    assert (delivery.status, delivery.purpose, delivery.target) == (DeliveryStatus.SENT, Purpose.TEST, pager.url)
    assert pager.pages == [
        {"summary": "ETL Monitor test notification: this channel works.", "detail": "", "severity": "LOW"}
    ]


def test_every_channel_kind_has_its_transport_module_loaded():
    assert sorted(transports.transport_kinds()) == sorted(ChannelKind.values)
