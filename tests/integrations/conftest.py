"""Local servers that speak each notification protocol, so the transports run their real clients.

- ``mailbox``: the SMTP server of tests/mailbox.py, keeping what it accepts; it can refuse a recipient or be down.
- ``slack``: a Slack workspace's Web API on pytest-httpserver (chat.postMessage, chat.update,
  conversations.history, conversations.replies, conversations.list) with Slack's documented
  response shapes.
- ``webhook``: a generic-webhook endpoint that checks the HMAC signature of every request.
- ``open_incident``: detection opens a HIGH incident on SALES-DAILY, as it does in production.
- ``fire``: the same for any severity at a chosen moment (routing tests on a controlled clock).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.utils import timezone
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from incidents.detection import rule_evaluate
from incidents.models import DetectionRule, Incident
from loaders.models import Loader
from tests.incidents.conftest import add_signals
from tests.mailbox import Mailbox

# The moment routing tests fire their incidents at.
ROUTING_T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

SIGNAL_FAILURE_RULE = "Signal failure rate above 5%"  # seeded, HIGH: routed to email and #alerts-high


# --- SMTP ------------------------------------------------------------------------------------------


@pytest.fixture
def mailbox(settings: Any) -> Iterator[Mailbox]:
    box = Mailbox()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", box.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    box.start()
    yield box
    box.stop()


# --- Slack Web API ------------------------------------------------------------------------------------


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers, content_type="application/json; charset=utf-8")


def _arguments(request: Request) -> dict[str, Any]:
    """Slack takes arguments as a query string, a form or a JSON body."""
    arguments: dict[str, Any] = {**request.args.to_dict(), **request.form.to_dict()}
    if request.is_json:
        arguments.update(request.get_json())
    for name in ("blocks", "metadata"):
        if isinstance(arguments.get(name), str):
            arguments[name] = json.loads(arguments[name])
    return arguments


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


class FakeSlack:
    """Just enough of a Slack workspace: channels, messages (with their metadata) and threads.

    Only ``TOKEN`` is accepted (anything else gets ``invalid_auth``). ``fail_next`` makes the next
    call of a method fail as Slack does: an error in an HTTP 200, or HTTP 429 with Retry-After.
    """

    TOKEN = "xoxb-test-token"
    CHANNELS = {
        "C0CRIT": "alerts-critical",
        "C0HIGH": "alerts-high",
        "C0MEDIUM": "alerts-medium",
        "C0LOW": "alerts-low",
    }

    def __init__(self, server: HTTPServer) -> None:
        self.messages: list[dict[str, Any]] = []  # every message posted, oldest first
        self._failures: dict[str, list[Response]] = {}
        self._sequence = itertools.count(1)
        methods = {
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "conversations.list": self._list,
        }
        for method, answer in methods.items():
            server.expect_request(f"/api/{method}").respond_with_handler(self._api(method, answer))

    def fail_next(self, method: str, error: str, *, status: int = 200, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        self._failures.setdefault(method, []).append(_json({"ok": False, "error": error}, status, headers))

    def posts(self, channel: str) -> list[dict[str, Any]]:
        """The top-level messages of a channel (``#name``), oldest first."""
        channel_id = self._channel_id(channel)
        return [m for m in self.messages if m["channel"] == channel_id and "thread_ts" not in m]

    def replies(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["channel"] == message["channel"] and m.get("thread_ts") == message["ts"]]

    def _api(self, method: str, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Request], Response]:
        def respond(request: Request) -> Response:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if not token:
                return _json({"ok": False, "error": "not_authed"})
            if token != self.TOKEN:
                return _json({"ok": False, "error": "invalid_auth"})
            if self._failures.get(method):
                return self._failures[method].pop(0)
            return _json(answer(_arguments(request)))

        return respond

    def _channel_id(self, reference: str) -> str | None:
        if reference in self.CHANNELS:
            return reference
        return next((id_ for id_, name in self.CHANNELS.items() if name == reference.lstrip("#")), None)

    def _find(self, channel_id: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["channel"] == channel_id and m["ts"] == ts), None)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._sequence):06d}"

    @staticmethod
    def _shown(message: dict[str, Any], *, metadata: bool = False) -> dict[str, Any]:
        return {k: v for k, v in message.items() if k != "channel" and (metadata or k != "metadata")}

    def _post_message(self, arguments: dict[str, Any]) -> dict[str, Any]:
        channel_id = self._channel_id(arguments.get("channel", ""))
        if channel_id is None:
            return {"ok": False, "error": "channel_not_found"}
        if not arguments.get("text") and not arguments.get("blocks"):
            return {"ok": False, "error": "no_text"}
        message = {"type": "message", "bot_id": "B0BOT", "text": arguments.get("text", ""), "ts": self._next_ts()}
        message |= {k: arguments[k] for k in ("blocks", "thread_ts", "metadata") if arguments.get(k)}
        self.messages.append({**message, "channel": channel_id})
        return {"ok": True, "channel": channel_id, "ts": message["ts"], "message": self._shown(message)}

    def _update(self, arguments: dict[str, Any]) -> dict[str, Any]:
        if arguments.get("channel") not in self.CHANNELS:
            return {"ok": False, "error": "channel_not_found"}
        message = self._find(arguments["channel"], arguments.get("ts", ""))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message |= {k: arguments[k] for k in ("text", "blocks") if k in arguments}
        message["edited"] = {"user": "U0BOT", "ts": self._next_ts()}
        shown = self._shown(message)
        return {
            "ok": True,
            "channel": message["channel"],
            "ts": message["ts"],
            "text": message["text"],
            "message": shown,
        }

    def _history(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The channel's top-level messages, newest first: thread replies are not listed."""
        channel_id = arguments.get("channel", "")
        if channel_id not in self.CHANNELS:  # history wants the id, not the name
            return {"ok": False, "error": "channel_not_found"}
        return self._listing(list(reversed(self.posts(channel_id))), arguments)

    def _replies(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A thread: its first message, then the replies."""
        if arguments.get("channel") not in self.CHANNELS:
            return {"ok": False, "error": "channel_not_found"}
        parent = self._find(arguments["channel"], arguments.get("ts", ""))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        listing = self._listing(self.replies(parent), arguments)
        listing["messages"].insert(0, self._shown(parent, metadata=_flag(arguments.get("include_all_metadata"))))
        return listing

    def _listing(self, messages: list[dict[str, Any]], arguments: dict[str, Any]) -> dict[str, Any]:
        oldest = float(arguments.get("oldest") or 0)
        with_metadata = _flag(arguments.get("include_all_metadata"))
        shown = [self._shown(m, metadata=with_metadata) for m in messages if float(m["ts"]) > oldest]
        limit = int(arguments.get("limit") or 100)
        return {"ok": True, "messages": shown[:limit], "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _list(self, arguments: dict[str, Any]) -> dict[str, Any]:
        channels = [
            {"id": id_, "name": name, "is_channel": True, "is_archived": False} for id_, name in self.CHANNELS.items()
        ]
        return {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}


@pytest.fixture
def slack(httpserver: HTTPServer, settings: Any) -> FakeSlack:
    settings.SLACK_BOT_TOKEN = FakeSlack.TOKEN
    settings.SLACK_API_BASE_URL = httpserver.url_for("/api/")
    return FakeSlack(httpserver)


# --- generic webhook ---------------------------------------------------------------------------------


class WebhookReceiver:
    """An endpoint that accepts only requests signed with ``SECRET`` (HMAC-SHA256 over ``timestamp.body``)."""

    SECRET = "s3cr3t"
    PATH = "/hooks/etl-monitor"

    def __init__(self, server: HTTPServer) -> None:
        self.url = server.url_for(self.PATH)
        self.requests: list[dict[str, Any]] = []  # every request that arrived
        self.accepted: list[dict[str, Any]] = []  # the payloads answered with 2xx
        self.failures_left = 0  # answer this many signed requests with HTTP 500 first
        server.expect_request(self.PATH, method="POST").respond_with_handler(self._receive)

    def _receive(self, request: Request) -> Response:
        body = request.get_data()
        timestamp = request.headers.get("X-ETL-Monitor-Timestamp", "")
        expected = hmac.new(self.SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(f"sha256={expected}", request.headers.get("X-ETL-Monitor-Signature", ""))
        self.requests.append(
            {"signed": signed, "delivery": request.headers.get("X-ETL-Monitor-Delivery"), "body": body}
        )
        if not signed:
            return Response("bad signature", status=401)
        if self.failures_left:
            self.failures_left -= 1
            return Response("upstream broken", status=500)
        self.accepted.append(json.loads(body))
        return Response(status=204)


@pytest.fixture
def webhook(httpserver: HTTPServer) -> WebhookReceiver:
    return WebhookReceiver(httpserver)


# --- incidents ------------------------------------------------------------------------------------------


@pytest.fixture
def open_incident(active_loader: Loader, django_capture_on_commit_callbacks: Any) -> Callable[..., Incident]:
    """Detection sees 3 of 4 signals of SALES-DAILY failed and opens a HIGH incident; after commit
    its deliveries are sent (Celery is eager) unless ``send=False`` (their tasks never ran)."""

    def open_(send: bool = True) -> Incident:
        now = timezone.now()
        add_signals(active_loader, failed=3, ok=1, at=now)
        with django_capture_on_commit_callbacks(execute=send):
            rule_evaluate(rule=DetectionRule.objects.get(name=SIGNAL_FAILURE_RULE), now=now)
        return Incident.objects.get(loader=active_loader, rule__name=SIGNAL_FAILURE_RULE)

    return open_


def incident_open_for(loader: Any) -> Incident:
    """An open HIGH incident of ``loader`` ("<code> failed"), as detection would have opened it."""
    now = timezone.now()
    code = loader.loader_code
    return Incident.objects.create(
        loader=loader,
        title=f"{code} failed",
        severity="HIGH",
        category="TRANSACTION",
        subject=code,
        fingerprint=f"{code.lower()}-failed",
        first_seen=now,
        last_seen=now,
    )


def channel_pages(client: Any, channel: Any) -> list[Any]:
    """Every admin page that shows a channel: the list, its change page, its history and each
    historical record. All answer 200."""
    urls = [
        "/admin/integrations/channel/",
        f"/admin/integrations/channel/{channel.pk}/change/",
        f"/admin/integrations/channel/{channel.pk}/history/",
        *(f"/admin/integrations/channel/{channel.pk}/history/{r.history_id}/" for r in channel.history.all()),
    ]
    pages = [client.get(url) for url in urls]
    assert [page.status_code for page in pages] == [200] * len(urls), urls
    return pages


def assert_never_shown(channel: Any, client: Any, *values: str) -> None:
    for page in channel_pages(client, channel):
        assert not any(value in page.content.decode() for value in values)


@pytest.fixture
def fire(active_loader):
    """Open (or fire again) an incident of the given severity on SALES-DAILY at a moment."""
    DetectionRule.objects.update(enabled=False)

    def fire(severity: str = "CRITICAL", at: dt.datetime = ROUTING_T0) -> Incident:
        rule, _ = DetectionRule.objects.get_or_create(
            name=f"failures {severity}",
            defaults={"kind": "signal_failure_rate", "threshold": 5.0, "severity": severity},
        )
        add_signals(active_loader, failed=5, ok=5, at=at)
        rule_evaluate(rule=rule, now=at)
        return Incident.objects.get(rule=rule, status__in=["OPEN", "ACKNOWLEDGED"])

    return fire
