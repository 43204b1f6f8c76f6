"""Generic webhook: the channel kind WEBHOOK, a POST of versioned JSON to the channel's URL, signed
(HMAC-SHA256) when the channel has a secret."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings

from etl_monitor.metrics import TargetService, http_client_call
from integrations.models import ChannelKind, Delivery, Purpose
from integrations.notifications.payloads import Message
from integrations.notifications.transports import Permanent, Transient, Transport, transport_register


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 over ``timestamp.body`` (the timestamp stops replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@transport_register
class WebhookTransport(Transport):
    """POST of the versioned JSON payload; signed when the channel has a secret."""

    kind = ChannelKind.WEBHOOK
    follow_ups = frozenset({Purpose.ACKNOWLEDGED, Purpose.RESOLVED, Purpose.CLOSED})

    def configured(self) -> str | None:
        return None if self.channel.url else "no URL"

    def check(self) -> dict[str, list[str]]:
        return {} if self.channel.url else {"url": ["A generic webhook needs a URL."]}

    def targets(self, tier: dict[str, Any]) -> list[str]:
        return [self.channel.url]

    def test_target(self, user: Any, tiers: list[dict[str, Any]]) -> str:
        return self.channel.url

    def render(self, message: Message) -> dict[str, Any]:
        """The versioned JSON: the event (``incident.resolved``…), the incident's context and a line."""
        return {
            "version": "1",
            "event": f"incident.{message.purpose.lower()}",
            "incident": None if message.is_test else dict(message.context),
            "message": message.follow_up or message.text,
        }

    def send(self, delivery: Delivery) -> str:
        import requests

        body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "ETL-Monitor-Webhook/1",
            "X-ETL-Monitor-Delivery": delivery.key_digest,
            "X-ETL-Monitor-Event": delivery.payload.get("event", ""),
            "X-ETL-Monitor-Timestamp": timestamp,
        }
        if self.channel.secret:
            headers["X-ETL-Monitor-Signature"] = webhook_signature(self.channel.secret, timestamp, body)
        try:
            with http_client_call(TargetService.WEBHOOK) as call:
                response = requests.post(
                    # The channel's URL as it is now (a retry after a fix goes to the fixed URL); the
                    # target is where it pointed when the delivery was queued.
                    self.channel.url or delivery.target,
                    data=body,
                    headers=headers,
                    timeout=settings.NOTIFY_HTTP_TIMEOUT,
                    allow_redirects=False,
                )
                call.status = response.status_code
        except (TimeoutError, requests.RequestException) as exc:
            raise Transient(f"webhook unreachable: {type(exc).__name__}") from exc
        if 200 <= response.status_code < 300:
            return delivery.key_digest
        if response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            raise Transient(
                "webhook rate limited",
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
                rate_limited=True,
            )
        if response.status_code >= 500 or response.status_code == 408:
            raise Transient(f"webhook: HTTP {response.status_code}")
        raise Permanent(f"webhook: HTTP {response.status_code}")
