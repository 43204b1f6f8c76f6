"""Local servers speaking Twilio's REST API and the generic SMS gateway's contract: threaded
(``ThreadingHTTPServer``, like ``fakes.FakeSlack``), so worker processes and the benchmark can
page through them while a test reads what arrived.

Twilio as documented (https://www.twilio.com/docs/messaging/api/message-resource,
https://www.twilio.com/docs/voice/api/call-resource, https://www.twilio.com/docs/api/errors):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form fields To, From, Body,
  StatusCallback) → 201 with the message resource (``sid`` "SM" + 32 hex, ``status`` "queued"…);
- ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (To, From, Url, StatusCallback) → 201
  with the call resource (``sid`` "CA" + 32 hex);
- HTTP Basic auth with the account SID and auth token, else 401 with error 20003;
- errors in Twilio's shape ``{"code", "message", "more_info", "status"}``, scripted per number
  (``fail``): 21211 (400, not a valid phone number), 20429 (429, Too Many Requests), 5xx;
- 30003 (Unreachable destination handset) is reported asynchronously, as Twilio does: the message
  is accepted, and ``status_callback_post`` later posts MessageStatus=undelivered, ErrorCode=30003
  to its StatusCallback, signed like Twilio (``X-Twilio-Signature`` by RequestValidator).

Every request is recorded with the time it arrived (``requests``)."""

from __future__ import annotations

import base64
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlparse

import pytest
import requests
from twilio.request_validator import RequestValidator

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f4k3-tw1l10-auth-t0k3n"
FROM_NUMBER = "+15005550006"  # Twilio's magic test "From" number
GATEWAY_TOKEN = "gw-t0k3n"

ERRORS: dict[str, tuple[int, str]] = {
    "21211": (400, "The 'To' number {to} is not a valid phone number."),
    "21614": (400, "'To' number {to} is not a valid mobile number"),
    "21606": (400, "The 'From' phone number provided is not a valid message-capable Twilio phone number."),
    "20429": (429, "Too Many Requests"),
    "20500": (500, "An internal server error has occurred"),
    "20503": (503, "Service Unavailable"),
}


@dataclass
class Arrived:
    """One request as the fake received it."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    at: float  # time.time() on arrival
    status: int = 0  # what the fake answered
    sid: str = ""  # the resource created, if any
    extra: dict[str, Any] = field(default_factory=dict)


def _twilio_date(at: float) -> str:
    return formatdate(at, usegmt=True)  # RFC 2822, as Twilio's date_created


class FakeTwilio:
    """Messages and Calls of one account. ``fail(number, code)`` scripts an error for a number;
    ``latency`` delays every answer (a slow provider, for concurrency tests)."""

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.lock = threading.Lock()
        self.requests: list[Arrived] = []
        self.messages: list[dict[str, Any]] = []  # the message resources created, in order
        self.calls: list[dict[str, Any]] = []  # the call resources created, in order
        self.latency = 0.0
        self._failures: dict[str, list[str]] = {}  # number → error codes for its next requests
        self._always: dict[str, str] = {}  # number → error code for every request
        self.server: Any = None
        self._stop: Callable[[], None] | None = None

    # --- scripting -----------------------------------------------------------------------------
    def fail(self, number: str, code: str, *, times: int | None = None) -> None:
        """Answer requests to ``number`` with Twilio error ``code`` (one of ERRORS): the next
        ``times`` ones, or every one (None)."""
        assert code in ERRORS, code
        with self.lock:
            if times is None:
                self._always[number] = code
            else:
                self._failures.setdefault(number, []).extend([code] * times)

    def heal(self, number: str) -> None:
        with self.lock:
            self._always.pop(number, None)
            self._failures.pop(number, None)

    # --- what tests read -----------------------------------------------------------------------
    def sms_to(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages if m["to"] == number]

    def calls_to(self, number: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["to"] == number]

    def message(self, sid: str) -> dict[str, Any]:
        with self.lock:
            return next(m for m in self.messages + self.calls if m["sid"] == sid)

    @property
    def url(self) -> str:
        """What TWILIO_API_BASE_URL is set to."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # --- asynchronous status, as Twilio reports it -----------------------------------------------
    def status_callback_request(
        self, sid: str, status: str = "undelivered", *, error_code: str = "30003", url: str | None = None
    ) -> tuple[str, dict[str, str], str]:
        """The status callback Twilio would post for message ``sid``: (url, form params, the
        X-Twilio-Signature header). ``url`` defaults to the message's StatusCallback."""
        resource = self.message(sid)
        url = url or resource.get("status_callback") or ""
        assert url, f"{sid} has no StatusCallback"
        if sid.startswith("CA"):
            params = {"CallSid": sid, "CallStatus": status, "To": resource["to"], "From": resource["from"]}
        else:
            params = {
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "To": resource["to"],
                "From": resource["from"],
            }
        params |= {"AccountSid": self.account_sid, "ApiVersion": "2010-04-01"}
        if error_code:
            params["ErrorCode"] = error_code
        with self.lock:
            resource["status"] = status
            resource["error_code"] = int(error_code) if error_code else None
        return url, params, RequestValidator(self.auth_token).compute_signature(url, params)

    def status_callback_post(
        self, sid: str, status: str = "undelivered", *, error_code: str = "30003", url: str | None = None
    ) -> requests.Response:
        """Post the signed status callback (e.g. 30003 Unreachable destination handset) over HTTP."""
        url, params, signature = self.status_callback_request(sid, status, error_code=error_code, url=url)
        return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=10)

    # --- protocol ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        arrived = Arrived(method, path, params, headers, time.time())
        with self.lock:
            self.requests.append(arrived)
        if self.latency:
            time.sleep(self.latency)
        status, body = self._answer(method, path, params, headers)
        arrived.status, arrived.sid = status, body.get("sid", "") if status == 201 else ""
        return status, body

    def _answer(self, method: str, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, dict]:
        prefix = f"/2010-04-01/Accounts/{self.account_sid}/"
        if not self._authorized(headers.get("Authorization", "")):
            return 401, _error(20003, "Authenticate", 401, detail="Your AccountSid or AuthToken was incorrect.")
        if method != "POST" or path.removeprefix(prefix) not in ("Messages.json", "Calls.json"):
            return 404, _error(20404, f"The requested resource {path} was not found", 404)
        resource = path[len(prefix) :].removesuffix(".json")
        to = params.get("To", "")
        missing = [name for name in ("To", "From", "Body" if resource == "Messages" else "Url") if not params.get(name)]
        if missing:
            return 400, _error(21604 if missing[0] == "To" else 21602, f"A '{missing[0]}' parameter is required.", 400)
        with self.lock:
            code = self._always.get(to) or (self._failures.get(to) or [None]).pop(0)
        if code:
            status, text = ERRORS[code]
            return status, _error(int(code), text.format(to=to), status)
        now = time.time()
        sid = ("SM" if resource == "Messages" else "CA") + secrets.token_hex(16)
        common = {
            "sid": sid,
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "to": to,
            "from": params["From"],
            "status": "queued",
            "direction": "outbound-api",
            "date_created": _twilio_date(now),
            "date_updated": _twilio_date(now),
            "price": None,
            "price_unit": "USD",
            "uri": f"{prefix}{resource}/{sid}.json",
        }
        if resource == "Messages":
            body = params["Body"]
            answer = common | {
                "body": body,
                "date_sent": None,
                "error_code": None,
                "error_message": None,
                "messaging_service_sid": None,
                "num_media": "0",
                "num_segments": str(max(1, -(-len(body) // 160))),
                "subresource_uris": {"media": f"{prefix}Messages/{sid}/Media.json"},
            }
            stored = {**answer, "status_callback": params.get("StatusCallback", ""), "at": now}
            with self.lock:
                self.messages.append(stored)
        else:
            answer = common | {
                "parent_call_sid": None,
                "phone_number_sid": None,
                "start_time": None,
                "end_time": None,
                "duration": None,
                "answered_by": None,
                "caller_name": None,
                "subresource_uris": {"recordings": f"{prefix}Calls/{sid}/Recordings.json"},
            }
            stored = {
                **answer,
                "url": params["Url"],
                "status_callback": params.get("StatusCallback", ""),
                "status_callback_event": params.get("StatusCallbackEvent", ""),
                "at": now,
            }
            with self.lock:
                self.calls.append(stored)
        return 201, answer

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    # --- serving -----------------------------------------------------------------------------------
    def start(self) -> FakeTwilio:
        self.server, self._stop = http_serve(_handler(self))
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _error(code: int, message: str, status: int, **extra: str) -> dict[str, Any]:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more_info, "status": status} | extra


class FakeSmsGateway:
    """The generic HTTP SMS gateway of ``oncall.providers`` (its contract is in that module's
    docstring): POST JSON {"to", "from", "body"} with a bearer token → 200 {"id": ...}.
    ``statuses`` scripts the next answers (e.g. [503]); 401 when the token is wrong."""

    PATH = "/v1/sms"

    def __init__(self, *, token: str = GATEWAY_TOKEN) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.requests: list[Arrived] = []
        self.sent: list[dict[str, Any]] = []  # the messages accepted, with their id
        self.statuses: list[int] = []
        self._ids = itertools.count(1)
        self.server: Any = None
        self._stop: Callable[[], None] | None = None

    @property
    def url(self) -> str:
        """What SMS_GATEWAY_URL is set to."""
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.PATH}"

    def handle(self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict]:
        arrived = Arrived(method, path, params, headers, time.time())
        with self.lock:
            self.requests.append(arrived)
            scripted = self.statuses.pop(0) if self.statuses else None
        if headers.get("Authorization") != f"Bearer {self.token}":
            arrived.status = 401
            return 401, {"error": "unauthorized"}
        if method != "POST" or path != self.PATH:
            arrived.status = 404
            return 404, {"error": "not found"}
        if scripted is not None and scripted >= 300:
            arrived.status = scripted
            return scripted, {"error": "scripted failure"}
        if not str(params.get("to", "")).startswith("+") or not params.get("body"):
            arrived.status = 400
            return 400, {"error": "invalid number"}
        with self.lock:
            message_id = f"gw-{next(self._ids)}"
            self.sent.append({"id": message_id, **params, "at": arrived.at})
        arrived.status, arrived.sid = 200, message_id
        return 200, {"id": message_id}

    def start(self) -> FakeSmsGateway:
        self.server, self._stop = http_serve(_handler(self))
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


def _handler(fake: FakeTwilio | FakeSmsGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            parsed = urlparse(self.path)
            params: dict[str, Any] = dict(parse_qsl(parsed.query))
            if raw.startswith("{"):
                params.update(json.loads(raw))
            elif raw:
                # Twilio's client sends repeated fields (StatusCallbackEvent) as repeated keys.
                for key, value in parse_qsl(raw):
                    params[key] = f"{params[key]} {value}" if key in params else value
            status, payload = fake.handle(self.command, parsed.path, params, dict(self.headers.items()))
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client is gone (a killed worker)

        do_POST = do_GET = _serve  # noqa: N815

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default (5) drops connections under parallel workers
    daemon_threads = True


def http_serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, Callable[[], None]]:
    """Serve ``handler`` on a free loopback port in a thread; return the server and its stop
    (quick: a test starts and stops two of them)."""
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def stop() -> None:
        server.shutdown()
        server.server_close()

    return server, stop


@pytest.fixture(name="twilio")
def twilio_fixture(settings: Any) -> Iterator[FakeTwilio]:
    """A fake Twilio account the settings point at (TWILIO_* set, the gateway off)."""
    fake = FakeTwilio().start()
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = fake.account_sid, fake.auth_token
    settings.TWILIO_FROM_NUMBER, settings.TWILIO_API_BASE_URL = FROM_NUMBER, fake.url
    settings.SMS_GATEWAY_URL = settings.SMS_GATEWAY_TOKEN = ""
    yield fake
    fake.stop()


@pytest.fixture(name="sms_gateway")
def sms_gateway_fixture(settings: Any) -> Iterator[FakeSmsGateway]:
    """A fake SMS gateway the settings point at (the fallback provider)."""
    fake = FakeSmsGateway().start()
    settings.SMS_GATEWAY_URL, settings.SMS_GATEWAY_TOKEN = fake.url, fake.token
    yield fake
    fake.stop()
