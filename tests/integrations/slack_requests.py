"""Requests as Slack sends them to the Slack app (interactivity and slash commands): form-encoded,
signed with slack-sdk's own algorithm (``SignatureVerifier.generate_signature``: v0 HMAC-SHA256 of
``v0:<timestamp>:<body>``), and the fake Slack Web API those tests answer from."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from tests.integrations.fakes import FakeSlack, serve

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
INTERACTIVITY = "/integrations/slack/interactivity/"
COMMANDS = "/integrations/slack/commands/"


@contextmanager
def slack_app_serving(settings: Any) -> Iterator[FakeSlack]:
    """The Slack Web API (threaded fake) with the bot token and the signing secret set (each test
    module's ``slack_app`` fixture)."""
    slack = FakeSlack()
    stop = serve(slack)
    settings.SLACK_BOT_TOKEN, settings.SLACK_API_BASE_URL = "xoxb-test", slack.url
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    try:
        yield slack
    finally:
        stop()


def signed_post(
    client: Any, path: str, fields: dict[str, str], *, at: float | None = None, secret: str = SIGNING_SECRET
) -> Any:
    """POST ``fields`` form-encoded with Slack's signature headers, signed at ``at`` (now)."""
    body = urlencode(fields)
    timestamp = str(int(time.time() if at is None else at))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded", headers=headers)


def click(slack: FakeSlack, slack_user: str, action_id: str, incident_id: int, **message: Any) -> dict[str, str]:
    """The form of a ``block_actions`` interaction (https://api.slack.com/reference/interaction-payloads/block-actions)."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0ETL", "domain": "etl"},
        "user": {"id": slack_user, "username": slack_user.lower(), "team_id": "T0ETL"},
        "api_app_id": "A0ETL",
        "container": {"type": "message", "channel_id": "C0HIGH", "is_ephemeral": False, **message},
        "channel": {"id": "C0HIGH", "name": "alerts-high"},
        "trigger_id": "1234.5678.abcd",
        "response_url": slack.response_url(),
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": str(incident_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return {"payload": json.dumps(payload)}


def command(slack: FakeSlack, slack_user: str, text: str) -> dict[str, str]:
    """The form of a slash command (https://api.slack.com/interactivity/slash-commands#app_command_handling)."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T0ETL",
        "channel_id": "C0HIGH",
        "user_id": slack_user,
        "user_name": slack_user.lower(),
        "command": "/etl-monitor",
        "text": text,
        "response_url": slack.response_url("cmd"),
        "trigger_id": "1234.5678.abcd",
    }
