"""Slack incoming webhook: the channel kind SLACK_WEBHOOK, a webhook URL (the channel's secret) and
no bot — each message a new post to the webhook's Slack channel, rendered as for the bot."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from etl_monitor.crypto import secret_undecryptable
from etl_monitor.metrics import TargetService, http_client_call
from integrations.models import ChannelKind, Delivery
from integrations.notifications.payloads import Message
from integrations.notifications.transports import Permanent, Transient, Transport, transport_register
from integrations.notifications.transports.slack import slack_render


@transport_register
class SlackWebhookTransport(Transport):
    """A Slack incoming webhook (no bot): each message is a new post to the webhook's channel."""

    kind = ChannelKind.SLACK_WEBHOOK

    def configured(self) -> str | None:
        return None if self.channel.secret else "no incoming-webhook URL"

    def check(self) -> dict[str, list[str]]:
        secret = self.channel.secret
        if not secret:
            return {"secret": ["Paste the incoming-webhook URL here."]}
        # An undecryptable secret is kept as stored; sending says it must be set again.
        if not secret_undecryptable(secret) and not secret.startswith("https://"):
            return {"secret": ["An incoming-webhook URL starts with https://."]}
        return {}

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return ["incoming-webhook"]  # the Slack channel the webhook was made for

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return "incoming-webhook"

    def render(self, message: Message) -> dict[str, Any]:
        return slack_render(message)

    def send(self, delivery: Delivery) -> str:
        from slack_sdk.webhook import WebhookClient

        url = self.channel.secret  # as it is now: a retry after a fix posts to the fixed URL
        if not url:
            raise Permanent("no incoming-webhook URL set on the channel")
        payload = delivery.payload
        try:
            with http_client_call(TargetService.SLACK) as call:
                response = WebhookClient(url, timeout=settings.NOTIFY_HTTP_TIMEOUT).send(
                    text=payload.get("thread_text") if payload.get("update") else payload["text"],
                    blocks=None if payload.get("update") else payload["blocks"],
                )
                call.status = response.status_code
        except Exception as exc:
            raise Transient(f"Slack webhook unreachable: {type(exc).__name__}") from exc
        if response.status_code == 200:
            return f"webhook:{delivery.pk}"
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after")
            raise Transient(
                "rate limited by Slack", retry_after=float(retry_after) if retry_after else None, rate_limited=True
            )
        if response.status_code >= 500:
            raise Transient(f"Slack webhook: HTTP {response.status_code}")
        raise Permanent(f"Slack webhook: HTTP {response.status_code} {str(response.body)[:100]}")
