"""Slack: the channel kind SLACK, a Slack app's bot token (slack-sdk's WebClient), and the Slack
rendering the incoming webhook (``slack_webhook``) shares.

With ``SLACK_SIGNING_SECRET`` set, the bot's incident message carries interactive buttons
(Acknowledge, Resolve, Escalate, Silence 1 h) answered by ``integrations.slack_app``; without it,
and always on an incoming webhook (which cannot update its message), the buttons are links."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

from etl_monitor.metrics import TargetService, http_client_call
from incidents.models import ACTIVE_STATUSES, Incident, IncidentStatus
from integrations.models import ChannelKind, Delivery, Purpose
from integrations.notifications.payloads import Message
from integrations.notifications.transports import Permanent, Transient, Transport, transport_register
from integrations.text import one_line, slack_escape

# Slack errors that retrying will not fix (https://api.slack.com/methods/chat.postMessage#errors).
SLACK_PERMANENT = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "channel_not_found",
    "is_archived",
    "not_in_channel",
    "restricted_action",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "no_text",
    "team_access_not_granted",
    "ekm_access_denied",
    "org_login_required",
    "invalid_token",
    "no_service",
    "no_service_id",
    "no_team",
    "team_disabled",
    "action_prohibited",
    "posting_to_general_channel_denied",
    "cant_update_message",
    "edit_window_closed",
}
METADATA_EVENT = "etl_monitor_delivery"


def _slack_error(exc: Exception) -> Exception:
    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", 0)
        data = response.data if isinstance(getattr(response, "data", None), dict) else {}
        error = data.get("error") or f"HTTP {status}"
        if status == 429 or error == "ratelimited":
            retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after")
            return Transient(
                "rate limited by Slack", retry_after=float(retry_after) if retry_after else None, rate_limited=True
            )
        if error in SLACK_PERMANENT or (400 <= status < 500 and status not in (408, 425)):
            return Permanent(f"Slack: {error}")
        return Transient(f"Slack: {error}")
    return Transient(f"Slack unreachable: {type(exc).__name__}: {exc}"[:300])


@transport_register
class SlackTransport(Transport):
    """A Slack app's bot token: post, update in place, reply in the thread."""

    kind = ChannelKind.SLACK
    can_update = True
    can_find = True
    follow_ups = frozenset({Purpose.ACKNOWLEDGED, Purpose.RESOLVED, Purpose.CLOSED})
    test_prompt = "a Slack channel, e.g. #alerts-test"
    test_target_missing = (
        "No notification rule routes this channel to a Slack channel yet: say which Slack channel the test goes to."
    )

    def configured(self) -> str | None:
        return None if self.channel.secret or settings.SLACK_BOT_TOKEN else "no Slack bot token (SLACK_BOT_TOKEN)"

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return [tier["slack_channel"]] if tier.get("slack_channel") else []

    def tier_problems(self, tier: dict[str, Any]) -> dict[str, str]:
        if self.targets(tier):
            return {}
        name = self.channel.name
        return {"slack_channel": f"Channel {name} posts to Slack: name the Slack channel, e.g. #alerts-critical."}

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        """The Slack channel of the least severe rule that routes here: a test should not page the
        critical channel when a quieter one exists."""
        return next((target for tier in tiers for target in self.targets(tier)), "")

    def render(self, message: Message) -> dict[str, Any]:
        return slack_render(message, interactive=bool(settings.SLACK_SIGNING_SECRET))

    def client(self) -> Any:
        from slack_sdk import WebClient

        base_url = settings.SLACK_API_BASE_URL.rstrip("/") + "/"
        token = self.channel.secret or settings.SLACK_BOT_TOKEN
        if not token:
            raise Permanent("no Slack bot token: set SLACK_BOT_TOKEN or the channel's secret")
        # retry_handlers=[]: the outbox is the only place that retries (it knows what was sent).
        return WebClient(token=token, base_url=base_url, timeout=settings.NOTIFY_HTTP_TIMEOUT, retry_handlers=[])

    def send(self, delivery: Delivery) -> str:
        payload = delivery.payload
        client = self.client()
        root = delivery.root
        # Every post carries the delivery's key, so that find() can tell whether it arrived.
        metadata = {
            "event_type": METADATA_EVENT,
            "event_payload": {"delivery": delivery.pk, "key": delivery.key_digest},
        }
        # One observation per send, whether it posts, or updates and replies in the thread.
        try:
            with http_client_call(TargetService.SLACK):
                if root is not None and payload.get("update") and root.external_id:
                    channel_id, ts = root.external_id.split(":", 1)
                    client.chat_update(channel=channel_id, ts=ts, text=payload["text"], blocks=payload["blocks"])
                    if payload.get("thread_text"):
                        client.chat_postMessage(
                            channel=channel_id, thread_ts=ts, text=payload["thread_text"], metadata=metadata
                        )
                    return f"{channel_id}:{ts}"
                kwargs: dict[str, Any] = {"channel": delivery.target, "text": payload["text"], "metadata": metadata}
                if root is not None and root.external_id:
                    channel_id, ts = root.external_id.split(":", 1)
                    kwargs.update(channel=channel_id, thread_ts=ts, text=payload.get("thread_text") or payload["text"])
                else:
                    kwargs["blocks"] = payload["blocks"]
                response = client.chat_postMessage(**kwargs)
        except (Transient, Permanent):
            raise
        except Exception as exc:
            raise _slack_error(exc) from exc
        return f"{response['channel']}:{response['ts']}"

    def find(self, delivery: Delivery) -> str | None:
        """A post whose outcome was unknown: look for our metadata where the post would be — the
        channel's recent history, or the first message's thread (history lists no thread replies)."""
        root = delivery.root if delivery.root is not None and delivery.root.external_id else None
        update = root is not None and delivery.payload.get("update")
        if update and not delivery.payload.get("thread_text"):
            return None  # a bare update is idempotent: simply do it again
        client = self.client()
        oldest = f"{(delivery.attempt_started_at or delivery.created_at).timestamp() - 5:.6f}"
        try:
            if root is not None:
                channel, thread_ts = root.external_id.split(":", 1)
                found = client.conversations_replies(
                    channel=channel, ts=thread_ts, oldest=oldest, include_all_metadata=True, limit=200
                )
            else:
                channel = delivery.target
                if not channel.startswith(("C", "G", "D")) or channel.startswith("#"):
                    channel = self._channel_id(client, channel)
                found = client.conversations_history(
                    channel=channel, oldest=oldest, include_all_metadata=True, limit=200
                )
        except Exception as exc:
            raise _slack_error(exc) from exc
        for message in found.get("messages", []):
            meta = message.get("metadata") or {}
            if (
                meta.get("event_type") == METADATA_EVENT
                and meta.get("event_payload", {}).get("key") == delivery.key_digest
            ):
                # An update's thread reply is posted after the update: both went out. Like send(),
                # name the updated message.
                return f"{channel}:{thread_ts if update else message['ts']}"
        return None

    def _channel_id(self, client: Any, name: str) -> str:
        wanted = name.lstrip("#")
        cursor = None
        while True:
            page = client.conversations_list(cursor=cursor, limit=1000, exclude_archived=True)
            for channel in page.get("channels", []):
                if channel.get("name") == wanted or channel.get("id") == wanted:
                    return channel["id"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise Permanent(f"Slack: channel {name} not found")


SEVERITY_STYLE = {
    "CRITICAL": ("🔴", "#d32f2f"),
    "HIGH": ("🟠", "#f57c00"),
    "MEDIUM": ("🟡", "#fbc02d"),
    "LOW": ("🟢", "#388e3c"),
}


# The interactive buttons (action_id → label) and the incident states that offer each: the
# services' own rules (acknowledge and escalate an open incident; resolve and silence an active one).
ACTION_BUTTONS = {
    "etl_ack": ("Acknowledge", (IncidentStatus.OPEN,)),
    "etl_resolve": ("Resolve", ACTIVE_STATUSES),
    "etl_escalate": ("Escalate", (IncidentStatus.OPEN,)),
    "etl_silence_1h": ("Silence 1 h", ACTIVE_STATUSES),
}


def _action_buttons(ctx: dict[str, Any], incident: Incident) -> list[dict[str, Any]]:
    """The buttons Slack sends back to ``integrations.slack_app`` (value: the incident id), those
    the incident's state allows; whether the clicker may is checked when they click. Silencing
    needs a loader or a rule to silence (an Alertmanager incident may have neither)."""
    silenceable = incident.loader_id is not None or incident.rule_id is not None
    buttons = []
    for action_id, (label, states) in ACTION_BUTTONS.items():
        if ctx["status"] in states and (action_id != "etl_silence_1h" or silenceable):
            button = {
                "type": "button",
                "text": {"type": "plain_text", "text": label},
                "action_id": action_id,
                "value": str(ctx["id"]),
            }
            if action_id == "etl_ack":
                button["style"] = "primary"
            buttons.append(button)
    return buttons


def _state_line(incident: Incident | None) -> str:
    """Who took the incident's last step ("Acknowledged by alice at 22:01 UTC"): what the updated
    message shows everyone in the channel."""
    if incident is None:
        return ""
    if incident.status == IncidentStatus.ACKNOWLEDGED and incident.acknowledged_by_id:
        who, at = incident.acknowledged_by, incident.acknowledged_at
        verb = "Acknowledged"
    elif incident.status == IncidentStatus.RESOLVED and incident.resolved_by_id:
        who, at = incident.resolved_by, incident.resolved_at
        verb = "Resolved"
    else:
        return ""
    when = f" at {at.astimezone(dt.UTC):%H:%M} UTC" if at else ""
    return f"{verb} by {slack_escape(who.get_username())}{when}"


def _slack_blocks(
    ctx: dict[str, Any], purpose: str, *, state_line: str = "", actions: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Block Kit for the incident. Every text from the context is escaped (``slack_escape``),
    plain_text included (Slack decodes the three entities there as well); the buttons' addresses
    are ours."""
    esc = slack_escape
    emoji, _colour = SEVERITY_STYLE.get(ctx["severity"], ("⚪", "#9e9e9e"))
    state = "" if ctx["status"] == IncidentStatus.OPEN else f" · *{ctx['status'].title()}*"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": esc(one_line(ctx["title"]))[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Severity:*\n{emoji} {ctx['severity']}{state}"},
                {"type": "mrkdwn", "text": f"*Service:*\n{esc(ctx['service'])}"},
                {"type": "mrkdwn", "text": f"*Detected:*\n{ctx['detected_at']}"},
                {"type": "mrkdwn", "text": f"*Category:*\n{ctx['category']}"},
            ],
        },
    ]
    if ctx["description"]:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Description:*\n{esc(ctx['description'])}"[:2900]}}
        )
    if ctx["suggestion"]:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Suggested action:*\n{esc(ctx['suggestion'])}"[:2900]},
            }
        )
    if ctx["correlation_id"]:
        correlation = esc(one_line(ctx["correlation_id"])).replace("`", "'")  # stays inside its code span
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Correlation id `{correlation}`"}]})
    if state_line:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": state_line}]})
    labels = {"incident": "View incident", "dashboard": "View dashboard", "logs": "View logs", "jira": "View Jira"}
    buttons = list(actions or [])
    buttons += [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": labels[name]},
            "url": url,
            "action_id": f"open_{name}",
        }
        for name, url in ctx["links"].items()
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return blocks


def slack_render(message: Message, *, interactive: bool = False) -> dict[str, Any]:
    """The message in Slack: its line of text and Block Kit (the Slack bot and incoming webhooks);
    a follow-up's line goes in the first message's thread (``thread_text``). ``interactive``: the
    bot's message with action buttons (see ``integrations.slack_app``)."""
    # The top-level text is mrkdwn too (and what notifications and screen readers show).
    text = slack_escape(one_line(message.text))
    if message.is_test:
        return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
    actions = _action_buttons(message.context, message.incident) if interactive else []
    blocks = _slack_blocks(message.context, message.purpose, state_line=_state_line(message.incident), actions=actions)
    payload = {"text": text, "blocks": blocks, "update": message.update}
    if message.follow_up:
        payload["thread_text"] = slack_escape(message.follow_up)
    return payload
