"""Transports: one class per channel kind, one interface.

``send(delivery) -> external_id`` sends one delivery and returns what identifies the
message at the receiver (Slack ``channel:ts``, the email Message-ID, the webhook
delivery id). It raises ``Transient`` (try again later, optionally after
``retry_after`` seconds) or ``Permanent`` (stop: the channel is misconfigured).
``find(delivery)`` looks for a message an earlier attempt may have sent (the outcome
was unknown: a worker killed mid-send); transports that cannot tell return None.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from integrations.models import ChannelKind
from integrations.text import one_line

if TYPE_CHECKING:
    from integrations.models import Channel, Delivery


class Transient(Exception):
    """Try again later. ``rate_limited``: the receiver asked us to slow down (HTTP 429) — such
    failures get a larger attempt budget (NOTIFY_MAX_ATTEMPTS_RATE_LIMITED)."""

    def __init__(self, reason: str, retry_after: float | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class Deferred(Transient):
    """Not tried at all (the receiver asked us to slow down): try later without using an attempt."""


class Permanent(Exception):
    """Retrying will not help. ``channel_fault``: the channel is misconfigured (mark it unhealthy,
    tell the admins) — False when only this message is wrong (e.g. nothing left to update)."""

    def __init__(self, reason: str, *, channel_fault: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.channel_fault = channel_fault


class Transport:
    kind: ClassVar[str]
    can_update: ClassVar[bool] = False  # edits its first message in place (Slack bot)
    can_find: ClassVar[bool] = False  # can tell whether an earlier attempt's message arrived

    def send(self, delivery: Delivery) -> str:
        raise NotImplementedError

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """Send several deliveries of one channel: pk → external id, or the exception raised.
        HTTP transports send them in parallel (the calls touch no database)."""
        if len(deliveries) == 1:
            return {deliveries[0].pk: _outcome(self.send, deliveries[0])}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(deliveries), settings.NOTIFY_SEND_THREADS)) as pool:
            return dict(
                zip([d.pk for d in deliveries], pool.map(lambda d: _outcome(self.send, d), deliveries), strict=True)
            )

    def find(self, delivery: Delivery) -> str | None:
        return None

    def recorded(self, delivery: Delivery, external_id: str) -> None:
        """Called in the transaction that records the delivery SENT (Jira stores the ticket key)."""


def _outcome(send: Any, delivery: Delivery) -> str | Exception:
    try:
        return send(delivery)
    except Exception as exc:  # noqa: BLE001 — the caller records every outcome
        return exc


_TRANSPORTS: dict[str, Transport] = {}


def transport_register(cls: type[Transport]) -> type[Transport]:
    _TRANSPORTS[cls.kind] = cls()
    return cls


def transport_for(channel: Channel) -> Transport:
    return _TRANSPORTS[channel.kind]


def message_id(delivery: Delivery) -> str:
    """Stable per delivery, so a resend after an unknown outcome carries the same Message-ID."""
    from email.utils import parseaddr

    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "etl-monitor.local"
    return f"<delivery-{delivery.pk}.{delivery.key_digest}@{domain}>"


@transport_register
class EmailTransport(Transport):
    kind = ChannelKind.EMAIL

    def send_many(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """A few SMTP connections side by side, each sending its share of the batch in turn."""
        shares = max(1, min(len(deliveries) // 10, settings.NOTIFY_SMTP_CONNECTIONS))
        if shares == 1:
            return self._send_over_one_connection(deliveries)
        from concurrent.futures import ThreadPoolExecutor

        outcomes: dict[int, str | Exception] = {}
        with ThreadPoolExecutor(max_workers=shares) as pool:
            for part in pool.map(self._send_over_one_connection, [deliveries[i::shares] for i in range(shares)]):
                outcomes.update(part)
        return outcomes

    def _send_over_one_connection(self, deliveries: list[Delivery]) -> dict[int, str | Exception]:
        """One SMTP connection for these messages; a connection that breaks is opened again for the next."""
        connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
        outcomes: dict[int, str | Exception] = {}
        try:
            for delivery in deliveries:
                outcome = _outcome(lambda d: self.send(d, connection=connection), delivery)
                outcomes[delivery.pk] = outcome
                if isinstance(outcome, Transient) and outcome.reason.startswith("SMTP server unreachable"):
                    connection.close()
        finally:
            connection.close()
        return outcomes

    def send(self, delivery: Delivery, connection: Any = None) -> str:
        payload = delivery.payload
        recipients = [address for address in delivery.target.split(",") if address]
        msg = EmailMultiAlternatives(
            # One line whatever the payload says: a CR or LF makes Django refuse the header, and a
            # payload stored before titles were cleaned would otherwise never be sent.
            subject=one_line(payload["subject"]),
            body=payload["text"],
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
            headers={
                "Message-ID": message_id(delivery),
                "X-ETL-Monitor-Incident": str(delivery.incident_id or ""),
                "X-ETL-Monitor-Severity": payload.get("severity", ""),
            },
            connection=connection or get_connection(timeout=settings.EMAIL_TIMEOUT),
        )
        if payload.get("html"):
            msg.attach_alternative(payload["html"], "text/html")
        try:
            msg.send()
        except smtplib.SMTPRecipientsRefused as exc:
            codes = {code for code, _msg in exc.recipients.values()}
            if all(code >= 500 for code in codes):
                raise Permanent(f"recipient refused: {', '.join(exc.recipients)}") from exc
            raise Transient(f"recipient deferred: {', '.join(exc.recipients)}") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise Permanent(f"SMTP authentication failed ({exc.smtp_code})") from exc
        except smtplib.SMTPResponseException as exc:
            reason = f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:300]
            if exc.smtp_code >= 500:
                raise Permanent(reason) from exc
            raise Transient(reason) from exc
        except (smtplib.SMTPException, OSError) as exc:  # refused connection, timeout, disconnect
            raise Transient(f"SMTP server unreachable: {type(exc).__name__}: {exc}"[:300]) from exc
        return message_id(delivery)


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

    def client(self, channel: Channel) -> Any:
        from slack_sdk import WebClient

        base_url = settings.SLACK_API_BASE_URL.rstrip("/") + "/"
        token = channel.secret or settings.SLACK_BOT_TOKEN
        if not token:
            raise Permanent("no Slack bot token: set SLACK_BOT_TOKEN or the channel's secret")
        # retry_handlers=[]: the outbox is the only place that retries (it knows what was sent).
        return WebClient(token=token, base_url=base_url, timeout=settings.NOTIFY_HTTP_TIMEOUT, retry_handlers=[])

    def send(self, delivery: Delivery) -> str:
        payload = delivery.payload
        client = self.client(delivery.channel)
        root = delivery.root
        # Every post carries the delivery's key, so that find() can tell whether it arrived.
        metadata = {
            "event_type": METADATA_EVENT,
            "event_payload": {"delivery": delivery.pk, "key": delivery.key_digest},
        }
        try:
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
        client = self.client(delivery.channel)
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


@transport_register
class SlackWebhookTransport(Transport):
    """A Slack incoming webhook (no bot): each message is a new post to the webhook's channel."""

    kind = ChannelKind.SLACK_WEBHOOK

    def send(self, delivery: Delivery) -> str:
        from slack_sdk.webhook import WebhookClient

        url = delivery.channel.secret
        if not url:
            raise Permanent("no incoming-webhook URL set on the channel")
        payload = delivery.payload
        try:
            response = WebhookClient(url, timeout=settings.NOTIFY_HTTP_TIMEOUT).send(
                text=payload.get("thread_text") if payload.get("update") else payload["text"],
                blocks=None if payload.get("update") else payload["blocks"],
            )
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


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 over ``timestamp.body`` (the timestamp stops replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@transport_register
class WebhookTransport(Transport):
    """POST of the versioned JSON payload; signed when the channel has a secret."""

    kind = ChannelKind.WEBHOOK

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
        if delivery.channel.secret:
            headers["X-ETL-Monitor-Signature"] = webhook_signature(delivery.channel.secret, timestamp, body)
        try:
            response = requests.post(
                delivery.target, data=body, headers=headers, timeout=settings.NOTIFY_HTTP_TIMEOUT, allow_redirects=False
            )
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
