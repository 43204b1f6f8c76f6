"""SMS and voice providers: the one place that talks to Twilio and to the fallback SMS gateway.

Pages go out through Twilio (its official client, ``twilio``): SMS through the Messages resource,
calls through the Calls resource. When Twilio fails in a way that may pass (HTTP 5xx, unreachable,
its rate limit 20429), an SMS goes through a second provider, a generic HTTP SMS gateway, so one
provider's outage does not silence the pager. An error about the number itself (21211: not a valid
phone number) is the same at every provider: it does not fail over. Voice is Twilio only.

The generic gateway contract (``SMS_GATEWAY_URL``, ``SMS_GATEWAY_TOKEN``):

- request: ``POST SMS_GATEWAY_URL`` with ``Authorization: Bearer <SMS_GATEWAY_TOKEN>`` and a JSON
  body ``{"to": "+14155550100", "from": "<TWILIO_FROM_NUMBER>", "body": "the text"}``;
- success: any 2xx with a JSON body ``{"id": "<the gateway's message id>"}``;
- 400 or 422: the message can never go (e.g. ``{"error": "invalid number"}``): not retried;
- 401 or 403: the token is refused; 429 (with ``Retry-After`` seconds): slow down; 5xx: try again.

Neither client retries by itself: the outbox is the only place that retries (it knows what was sent).
Everything is off until Twilio's account SID, auth token and sending number are set.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from django.conf import settings

from etl_monitor.metrics import TargetService, http_client_call

# Twilio error codes (https://www.twilio.com/docs/api/errors).
TWILIO_AUTH_FAILED = "20003"
TWILIO_RATE_LIMITED = "20429"
# The number itself is wrong or refuses us: no provider can deliver to it.
TWILIO_NUMBER_ERRORS = {
    "21211",  # invalid 'To' phone number
    "21214",  # 'To' phone number cannot be reached
    "21217",  # phone number does not appear to be valid
    "21610",  # the recipient replied STOP
    "21612",  # Twilio cannot route to this number
    "21614",  # 'To' number is not a valid mobile number
}


class ProviderError(Exception):
    """A provider did not take the message.

    ``permanent``: this message can never go to this number (an invalid number): neither retried
    nor failed over. ``misconfigured``: the provider refuses us (credentials, account, sending
    number, or it is not configured): retrying will not help until someone fixes the settings.
    Neither: it may pass (``rate_limited`` when the provider asked us to slow down, optionally for
    ``retry_after`` seconds). ``code`` is the provider's error code (Twilio's "21211"), or ""."""

    def __init__(
        self,
        reason: str,
        *,
        code: str = "",
        permanent: bool = False,
        misconfigured: bool = False,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.permanent = permanent
        self.misconfigured = misconfigured
        self.rate_limited = rate_limited
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Trying again (later, or through another provider) may work."""
        return not (self.permanent or self.misconfigured)


class SmsProvider:
    """One SMS provider: ``send_sms`` returns the provider's message id or raises ProviderError."""

    name: ClassVar[str]

    def configured(self) -> str | None:
        """Why the provider cannot send (the missing setting), or None."""
        raise NotImplementedError

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        raise NotImplementedError


def twilio_configured() -> str | None:
    """Why Twilio cannot be used: the first missing TWILIO_* setting, or None."""
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"):
        if not getattr(settings, name):
            return f"Twilio is not configured ({name} is not set)"
    return None


_clients = threading.local()


def twilio_client() -> Any:
    """Twilio's REST client for the current settings (one per thread: it keeps a connection pool).

    ``TWILIO_API_BASE_URL`` replaces the Api domain's base URL (``client.api.base_url``: the
    client joins it with ``/2010-04-01/Accounts/…``), so tests and staging point at a local server."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    key = (settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_API_BASE_URL)
    cached = getattr(_clients, "twilio", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    # max_retries=0: the outbox is the only place that retries.
    http = TwilioHttpClient(timeout=settings.NOTIFY_HTTP_TIMEOUT, max_retries=0)
    client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, http_client=http)
    client.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
    _clients.twilio = (key, client)
    return client


def twilio_error(exc: Exception) -> ProviderError:
    """What a failed Twilio request means for the message (its error code, by Twilio's docs)."""
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        status = int(getattr(exc, "status", 0) or 0)
        code = str(getattr(exc, "code", "") or "")
        detail = (getattr(exc, "msg", "") or getattr(exc, "detail", "") or str(exc)).split(": ", 1)[-1]
        reason = f"Twilio {code or status}: {detail}"[:300]
        if status == 429 or code == TWILIO_RATE_LIMITED:
            return ProviderError(reason, code=code, rate_limited=True)
        if code in TWILIO_NUMBER_ERRORS:
            return ProviderError(reason, code=code, permanent=True)
        if status >= 500 or status in (408, 425):
            return ProviderError(reason, code=code)
        # 20003 (authentication), 21606 (the From number cannot send SMS), 21608 (trial account)…
        return ProviderError(reason, code=code, misconfigured=True)
    return ProviderError(f"Twilio unreachable: {type(exc).__name__}: {exc}"[:300])


class TwilioSms(SmsProvider):
    """Twilio's Messages resource."""

    name = "twilio"

    def configured(self) -> str | None:
        return twilio_configured()

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        if problem := self.configured():
            raise ProviderError(problem, misconfigured=True)
        try:
            with http_client_call(TargetService.TWILIO):
                message = twilio_client().messages.create(
                    to=to, from_=settings.TWILIO_FROM_NUMBER, body=body, status_callback=status_callback
                )
        except Exception as exc:
            raise twilio_error(exc) from exc
        return message.sid


class HttpGatewaySms(SmsProvider):
    """The generic HTTP SMS gateway (the contract is in this module's docstring)."""

    name = "gateway"

    def configured(self) -> str | None:
        if not settings.SMS_GATEWAY_URL:
            return "no SMS gateway (SMS_GATEWAY_URL is not set)"
        if not settings.SMS_GATEWAY_TOKEN:
            return "the SMS gateway has no token (SMS_GATEWAY_TOKEN is not set)"
        return None

    def send_sms(self, to: str, body: str, *, status_callback: str | None = None) -> str:
        import requests

        if problem := self.configured():
            raise ProviderError(problem, misconfigured=True)
        try:
            with http_client_call(TargetService.SMS_GATEWAY) as call:
                response = requests.post(
                    settings.SMS_GATEWAY_URL,
                    json={"to": to, "from": settings.TWILIO_FROM_NUMBER, "body": body},
                    headers={"Authorization": f"Bearer {settings.SMS_GATEWAY_TOKEN}"},
                    timeout=settings.NOTIFY_HTTP_TIMEOUT,
                    allow_redirects=False,
                )
                call.status = response.status_code
        except (TimeoutError, requests.RequestException) as exc:
            raise ProviderError(f"SMS gateway unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            try:
                return str(response.json()["id"])
            except (ValueError, KeyError, TypeError) as exc:
                # It may have sent the message: say so rather than guess (the outbox retries).
                raise ProviderError(f"SMS gateway: HTTP {status} without a message id") from exc
        reason = f"SMS gateway: HTTP {status}"
        if status == 429:
            wait = response.headers.get("Retry-After", "")
            raise ProviderError(reason, rate_limited=True, retry_after=float(wait) if wait.isdigit() else None)
        if status in (400, 422):
            raise ProviderError(f"{reason}: {response.text[:200]}", permanent=True)
        if status >= 500 or status in (408, 425):
            raise ProviderError(reason)
        raise ProviderError(reason, misconfigured=True)


def sms_providers() -> list[SmsProvider]:
    """The SMS providers in the order they are tried."""
    return [TwilioSms(), HttpGatewaySms()]


def sms_send(to: str, body: str, *, status_callback: str | None = None) -> tuple[str, str]:
    """Send one SMS: (the provider's name, its message id).

    Twilio first; the gateway only when Twilio failed in a way that may pass (a wrong number stays
    wrong, and refused credentials need a person). Both failing transiently raises a transient
    error naming both; the status callback is Twilio's only (the gateway reports nothing back)."""
    primary, *fallbacks = sms_providers()
    if problem := primary.configured():
        raise ProviderError(problem, misconfigured=True)
    try:
        return primary.name, primary.send_sms(to, body, status_callback=status_callback)
    except ProviderError as exc:
        first = exc
        if not first.transient:
            raise
    failures = [first.reason]
    for provider in fallbacks:
        if provider.configured():
            continue
        try:
            return provider.name, provider.send_sms(to, body)
        except ProviderError as exc:
            if exc.permanent:
                raise
            failures.append(exc.reason)
    raise ProviderError(
        "; ".join(failures), code=first.code, rate_limited=first.rate_limited, retry_after=first.retry_after
    )


def call_start(to: str, *, url: str, status_callback: str) -> str:
    """Start a call through Twilio's Calls resource: its sid (``CA…``). Twilio fetches ``url`` for
    what to say once the person answers and posts the call's progress to ``status_callback``."""
    if problem := twilio_configured():
        raise ProviderError(problem, misconfigured=True)
    try:
        with http_client_call(TargetService.TWILIO):
            call = twilio_client().calls.create(
                to=to,
                from_=settings.TWILIO_FROM_NUMBER,
                url=url,
                status_callback=status_callback,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
            )
    except Exception as exc:
        raise twilio_error(exc) from exc
    return call.sid
