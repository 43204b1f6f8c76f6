"""Local servers speaking Slack's Web API and a plain webhook receiver, for tests that run a real
worker process (and for the notification benchmark): threaded, so a request can be held open
while others are answered.

The Slack responses follow https://api.slack.com/methods/chat.postMessage (``ok``, ``channel``,
``ts``, ``message``), chat.update, conversations.history (``messages`` with ``metadata`` when
``include_all_metadata`` is set) and the documented error shape ``{"ok": false, "error": ...}``;
HTTP 429 carries ``Retry-After``. users.info answers as https://api.slack.com/methods/users.info
(``user.profile.email``; ``user_not_found``), and ``response_url()`` gives an address that keeps
what the app posts to an interaction's response_url (``responses``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

from tests.mailbox import Mailbox

RESPONSE_PREFIX = "response-"  # the last part of a response_url() address

CHANNEL_IDS = {
    "#alerts-critical": "C0CRIT",
    "#alerts-high": "C0HIGH",
    "#alerts-medium": "C0MED",
    "#alerts-low": "C0LOW",
}


@dataclass
class Received:
    method: str
    body: dict[str, Any]
    at: float
    headers: dict[str, str] = field(default_factory=dict)


class FakeSlack:
    """chat.postMessage / chat.update / conversations.history / conversations.list.

    ``script`` holds answers for the next postMessage calls: ``("429", seconds)``,
    ``("500", None)``, ``("error", "invalid_auth")``, ``("hang", event)`` (store the
    message, then hold the request until the event is set — a worker killed meanwhile never
    hears the answer) or ``("drop", event)`` (hold it, then store nothing)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []  # stored, as conversations.history returns them
        self.calls: list[Received] = []
        self.script: list[tuple[str, Any]] = []
        self.stored_at: dict[str, float] = {}  # ts → when the message was stored
        self.server: ThreadingHTTPServer | None = None
        self._seq = 0
        self.users: dict[str, dict[str, Any]] = {}  # Slack user id → users.info's ``user``
        self.responses: list[dict[str, Any]] = []  # what was posted to a response_url()

    def user_add(self, slack_id: str, email: str, **fields: Any) -> None:
        """A workspace member as users.info returns them."""
        self.users[slack_id] = {
            "id": slack_id,
            "team_id": "T0ETL",
            "name": email.split("@")[0],
            "deleted": False,
            "is_bot": False,
            "profile": {"email": email, "real_name": email.split("@")[0]},
            **fields,
        }

    def response_url(self, name: str = "1") -> str:
        """An interaction's response_url served here (Slack's is on hooks.slack.com)."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/actions/T0ETL/{RESPONSE_PREFIX}{name}"

    # --- what tests read -------------------------------------------------------------------
    def posts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if "thread_ts" not in m]

    def received_at(self, ts: str) -> float:
        with self.lock:
            return self.stored_at[ts]

    def calls_to(self, method: str) -> list[Received]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    # --- protocol -------------------------------------------------------------------------------
    def handle(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict, dict]:
        with self.lock:
            self.calls.append(Received(method, body, time.time(), headers))
            step = self.script.pop(0) if method == "chat.postMessage" and self.script else None
            if method.startswith(RESPONSE_PREFIX):  # a response_url: no token, answered "ok"
                self.responses.append(body)
                return 200, {"ok": True}, {}
        if not headers.get("Authorization", "").startswith("Bearer xoxb-"):
            return 200, {"ok": False, "error": "not_authed"}, {}
        if step is not None:
            kind, arg = step
            if kind == "429":
                return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(arg)}
            if kind == "500":
                return 500, {"ok": False, "error": "internal_error"}, {}
            if kind == "error":
                return 200, {"ok": False, "error": arg}, {}
            if kind == "drop":  # held, then lost: the request never reached Slack's storage
                arg.wait(timeout=60)
                return 503, {"ok": False, "error": "service_unavailable"}, {}
        if method == "chat.postMessage":
            channel = CHANNEL_IDS.get(body.get("channel", ""), body.get("channel", ""))
            if not channel:
                return 200, {"ok": False, "error": "channel_not_found"}, {}
            with self.lock:
                self._seq += 1
                ts = f"{int(time.time())}.{self._seq:06d}"
                message = {"type": "message", "ts": ts, "text": body.get("text", ""), "channel": channel}
                for key in ("blocks", "attachments", "metadata", "thread_ts"):
                    if body.get(key):
                        message[key] = json.loads(body[key]) if isinstance(body[key], str) else body[key]
                self.messages.append(message)
                self.stored_at[ts] = time.time()
            if step is not None and step[0] == "hang":
                step[1].wait(timeout=60)
            return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, {}
        if method == "chat.update":
            with self.lock:
                for message in self.messages:
                    if message["ts"] == body.get("ts") and message["channel"] == body.get("channel"):
                        message.update(text=body.get("text", ""), blocks=body.get("blocks"), edited=True)
                        return 200, {"ok": True, "channel": message["channel"], "ts": message["ts"]}, {}
            return 200, {"ok": False, "error": "message_not_found"}, {}
        if method == "conversations.history":
            oldest = float(body.get("oldest") or 0)
            with self.lock:
                found = [
                    m
                    for m in self.messages
                    if m["channel"] == body.get("channel") and float(m["ts"].split(".")[0]) >= int(oldest)
                ]
            if str(body.get("include_all_metadata", "")).lower() not in ("1", "true"):
                found = [{k: v for k, v in m.items() if k != "metadata"} for m in found]
            return 200, {"ok": True, "messages": list(reversed(found)), "has_more": False}, {}
        if method == "users.info":
            with self.lock:
                user = self.users.get(body.get("user", ""))
            if user is None:
                return 200, {"ok": False, "error": "user_not_found"}, {}
            return 200, {"ok": True, "user": user}, {}
        if method == "conversations.list":
            channels = [{"id": cid, "name": name.lstrip("#")} for name, cid in CHANNEL_IDS.items()]
            return 200, {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}, {}
        return 404, {"ok": False, "error": "unknown_method"}, {}


class WebhookReceiver:
    """Records POSTs; ``statuses`` scripts the next answers (e.g. [500, 500, 500] then 200s)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Received] = []
        self.statuses: list[int] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def handle(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict, dict]:
        with self.lock:
            status = self.statuses.pop(0) if self.statuses else 200
            self.calls.append(Received(method, {"status": status, **body}, time.time(), headers))
        return status, {"ok": status == 200}, {}

    def accepted(self) -> list[Received]:
        with self.lock:
            return [c for c in self.calls if c.body["status"] == 200]


def serve(fake: FakeSlack | WebhookReceiver) -> Callable[[], None]:
    """Start the fake on a free loopback port; return the function that stops it."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            parsed = urlparse(self.path)
            body: dict[str, Any] = dict(parse_qsl(parsed.query))
            if raw.startswith("{"):
                body.update(json.loads(raw))
            elif raw:
                body.update(parse_qsl(raw))
            method = parsed.path.rsplit("/", 1)[-1]
            status, payload, extra = fake.handle(method, body, dict(self.headers.items()))
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client is gone (a killed worker)

        do_GET = do_POST  # noqa: N815

    fake.server, stop = http_serve(Handler)
    return stop


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) drops connections under parallel clients
    daemon_threads = True


def http_serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, Callable[[], None]]:
    """Serve ``handler`` on a free loopback port in a thread; return the server and its stop."""
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server, stop


def receiver_process(kind: str, pipe: Any) -> None:
    """Run one receiver in its own process (its own interpreter lock, as a remote server would
    be): send its address, serve until told to stop, then send what it received."""
    if kind == "slack":
        slack = FakeSlack()
        stop = serve(slack)
        pipe.send(slack.url)
        pipe.recv()
        stop()
        pipe.send([(m["ts"], slack.stored_at[m["ts"]], m.get("metadata")) for m in slack.posts()])
    else:
        with Mailbox() as mailbox:
            pipe.send(mailbox.port)
            pipe.recv()
        pipe.send((mailbox.received, mailbox.count))
