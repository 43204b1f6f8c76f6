"""A failed run reported by a job becomes an incident and a Slack message, through the real
worker and beat: the request only stores the run; detection and delivery happen in the worker."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import MARKER, Platform, wait_until

pytestmark = pytest.mark.services


def test_a_failed_run_opens_an_incident_and_slack_gets_one_message(platform: Platform):
    code = platform.loader_create("E2E-SLACK")
    platform.run_failed(code, platform.token_create(code), "ORA-00942: table or view does not exist")

    [incident] = wait_until(lambda: platform.incidents(code), f"an incident for {code}", timeout=60)
    message = wait_until(
        lambda: [m for m in platform.slack.posts() if incident["title"] in json.dumps(m, ensure_ascii=False)],
        f"a Slack message about {incident['title']!r} at the fake Slack",
        timeout=60,
    )

    assert incident["severity"] == "HIGH" and incident["status"] == "OPEN"
    assert incident["rule"] == "Run failed"
    assert len(message) == 1 and message[0]["channel"] == "C0HIGH"  # the roadmap's #alerts-high
    call = next(c for c in platform.slack.calls_to("chat.postMessage") if incident["title"] in c.body.get("text", ""))
    assert call.headers["Authorization"] == f"Bearer xoxb-{MARKER}-channel"  # the channel's own bot token
    assert MARKER not in json.dumps(message)
    timeline = platform.get("Viewer", f"/api/v1/incidents/{incident['id']}/").json()["events"]
    assert "OPENED" in [event["kind"] for event in timeline]
