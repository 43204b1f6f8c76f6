"""docs/webhooks.md tells receivers what the generic webhook sends and how to check its signature.

These tests hold the page to the code: the Python check printed there accepts a real request of
the webhook channel and refuses a tampered or replayed one, and the example body has exactly the
keys the channel sends."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response
from werkzeug.datastructures import Headers

from integrations.models import Channel, ChannelKind, NotificationRule
from loaders.models import Team

PAGE = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "the channel's secret"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def _documented_check() -> Any:
    """The page's ``signature_ok``, run as a reader would paste it."""
    [code] = _blocks("python")
    namespace: dict[str, Any] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)  # our own documentation's sample, as a reader pastes it
    assert namespace["SECRET"] == SECRET.encode(), "the sample's secret placeholder changed; update SECRET here"
    return namespace["signature_ok"]


@pytest.fixture
def received(httpserver: HTTPServer, team: Team, open_incident, settings: Any) -> dict[str, Any]:
    """One real delivery of an opened incident through a signed webhook channel: its headers and raw body."""
    settings.GRAFANA_URL, settings.KIBANA_URL = "https://grafana.example.com", "https://kibana.example.com"
    requests: list[dict[str, Any]] = []

    def receive(request: Request) -> Response:
        # Case-insensitive, as every web framework hands headers to a receiver.
        requests.append({"headers": Headers(request.headers), "body": request.get_data()})
        return Response(status=204)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(receive)
    Channel.objects.create(name="ops-hook", kind=ChannelKind.WEBHOOK, url=httpserver.url_for("/hook"), secret=SECRET)
    NotificationRule.objects.create(severity="HIGH", team=team, channels=["ops-hook"])
    open_incident()
    [request] = requests
    return request


def test_it_accepts_the_request_the_channel_sends(received):
    assert _documented_check()(received["headers"], received["body"]) is True


def test_it_refuses_a_body_changed_on_the_way(received):
    check = _documented_check()
    tampered = received["body"].replace(b'"HIGH"', b'"LOW"')
    assert tampered != received["body"]
    assert check(received["headers"], received["body"]) is True
    assert check(received["headers"], tampered) is False


def test_it_refuses_a_request_replayed_later(received, monkeypatch):
    check = _documented_check()
    sent_at = int(received["headers"]["X-ETL-Monitor-Timestamp"])
    monkeypatch.setattr(time, "time", lambda: sent_at + 299)
    assert check(received["headers"], received["body"]) is True
    monkeypatch.setattr(time, "time", lambda: sent_at + 301)
    assert check(received["headers"], received["body"]) is False


def test_the_example_body_has_the_keys_the_channel_sends(received):
    sent = json.loads(received["body"])
    [example] = [json.loads(block) for block in _blocks("json") if '"incident.opened"' in block]
    assert sorted(example) == sorted(sent)
    assert sorted(example["incident"]) == sorted(sent["incident"])
    assert sorted(example["incident"]["links"]) == sorted(sent["incident"]["links"])
    assert example["version"] == sent["version"] and example["event"] == sent["event"]
