"""Twilio's webhooks: replies to an SMS page, key presses on a paging call, delivery status.

Routes (under /integrations/twilio/, POST only, no CSRF: Twilio signs them instead):

- ``sms/``: an inbound SMS. Its sender is the person whose *verified* phone it came from; the
  body names the page by its code: ``4821``, ``ACK 4821`` or ``4821 A`` acknowledge the page's
  incidents still open, ``4821 E`` escalates them to the next tier, ``HELP`` explains. The answer
  is TwiML ``<Message>`` saying what was done.
- ``voice/<page id>/``: what a paging call says once answered (the page's incidents), then
  ``<Gather>`` one key; ``voice/<page id>/gather/``: 1 acknowledges, 2 escalates (as the page's
  person), anything else repeats (three times at most).
- ``status/``: Twilio's status callbacks (MessageStatus / CallStatus, ErrorCode) update the page;
  an SMS undelivered or failed, or a call busy, unanswered or failed, is written on each incident's
  timeline (NOTIFY_FAILED) naming the person and Twilio's error; escalation goes on by timeout.

Every action goes through the services (``incident_acknowledge``, ``incident_escalate``) with
source "sms" or "voice", so roles hold: a Viewer replying is told they cannot.

Verification: each request must carry ``X-Twilio-Signature``, checked with Twilio's own
``RequestValidator`` and TWILIO_AUTH_TOKEN over the *public* URL Twilio called
(ETL_MONITOR_BASE_URL + path + query) and the POST parameters. Missing or wrong: 403, nothing
done, logged without the body (it holds phone numbers). TWILIO_AUTH_TOKEN unset: 404.

Replays: the same signed request again (same signature, URL and parameters: a captured request
sent again, or Twilio retrying one that timed out) is recognised by its digest
(``TwilioWebhookReceipt``, written in the same transaction as the action) and answered 200 with an
empty ``<Response/>``, changing nothing. 200 rather than 409 because Twilio retries a webhook that
failed: an error would fill its debugger with failures for work that was done, and an empty
response sends the person nothing twice. A legitimate second press on the same call is not a
replay: each ``<Gather>`` posts to its own URL (``?attempt=N``).

Expiry: a page is answered only within PAGE_ANSWER_HOURS of being sent (an older reply or key
press is told the page expired), and receipts are pruned only after twice that
(``twilio_receipts_prune``): a request replayed after its receipt is gone names a page that can no
longer be answered.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from etl_monitor.errors import PermissionRefused, StateConflict
from incidents.models import EventKind, Incident, IncidentStatus
from incidents.services import incident_acknowledge
from integrations.models import Page, PageMethod, TwilioWebhookReceipt
from integrations.notifications.outbox import incident_note
from integrations.notifications.routing import incident_escalate
from oncall.paging import phone_owner

logger = logging.getLogger(__name__)

NOT_REGISTERED = "This number is not registered with ETL Monitor."
VOICE_ATTEMPTS = 3  # prompts before a call without a valid key press says goodbye
SPOKEN_INCIDENTS = 3  # a call names at most this many incidents, then "and N more"

# Twilio's statuses, in the order they progress: callbacks may arrive out of order, and a late
# "sent" must not overwrite "delivered" (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status).
STATUS_RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "initiated": 1,
    "sending": 2,
    "ringing": 2,
    "sent": 3,
    "in-progress": 3,
    "answered": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "canceled": 4,
    "read": 5,
}
SMS_NOT_DELIVERED = {"undelivered", "failed"}
CALL_NOT_ANSWERED = {"busy", "no-answer", "failed", "canceled"}
# Twilio's asynchronous delivery errors (https://www.twilio.com/docs/api/errors), as the timeline says them.
TWILIO_ERRORS = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
    "21610": "the recipient replied STOP",
}

Handled = tuple[str, str]  # (the TwiML answer, the outcome kept on the receipt)


def _public_url(path: str) -> str:
    return settings.ETL_MONITOR_BASE_URL.rstrip("/") + path


def _twiml(xml: str) -> HttpResponse:
    return HttpResponse(xml, content_type="text/xml; charset=utf-8")


def _digest(signature: str, url: str, params: Any) -> str:
    fields = sorted((name, value) for name in params for value in params.getlist(name))
    return hashlib.sha256(json.dumps([signature, url, fields]).encode()).hexdigest()


def twilio_webhook(kind: str) -> Callable[[Callable[..., Handled]], Callable[..., HttpResponse]]:
    """A Twilio webhook view: configured (else 404), signed (else 403), not seen before (else an
    empty answer); ``handler`` runs in one transaction with the receipt that records it."""

    def decorate(handler: Callable[..., Handled]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @require_POST
        @functools.wraps(handler)
        def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if not settings.TWILIO_AUTH_TOKEN:
                return HttpResponse(
                    "Twilio is not configured (TWILIO_AUTH_TOKEN).", status=404, content_type="text/plain"
                )
            url = _public_url(request.get_full_path())
            signature = request.headers.get("X-Twilio-Signature", "")
            if not signature or not RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(url, request.POST, signature):
                logger.warning(
                    "Twilio %s webhook refused: missing or wrong X-Twilio-Signature (from %s)",
                    kind,
                    request.META.get("REMOTE_ADDR"),
                )
                return HttpResponse("Missing or wrong X-Twilio-Signature.", status=403, content_type="text/plain")
            digest = _digest(signature, url, request.POST)
            sid = request.POST.get("MessageSid") or request.POST.get("CallSid") or ""
            try:
                with transaction.atomic():
                    receipt = TwilioWebhookReceipt.objects.create(digest=digest, kind=kind, sid=sid[:64])
                    answer, outcome = handler(request, **kwargs)
                    receipt.outcome = outcome[:300]
                    receipt.save(update_fields=["outcome"])
            except IntegrityError:
                if not TwilioWebhookReceipt.objects.filter(digest=digest).exists():
                    raise
                logger.info("Twilio %s webhook %s: a replay, ignored", kind, sid)
                return _twiml(str(VoiceResponse() if kind in ("voice", "gather") else MessagingResponse()))
            return _twiml(answer)

        return view

    return decorate


# --- people's actions ------------------------------------------------------------------------------


def _named(incident: Incident) -> str:
    title = incident.title if len(incident.title) <= 40 else incident.title[:39] + "…"
    return f"#{incident.pk} {title}"


def page_answer(*, user: Any, page: Page, escalate: bool, source: str) -> str:
    """Acknowledge (or escalate) the page's incidents still open, as ``user``: the sentence that
    says what was done. PermissionRefused when the role does not allow it (nothing done)."""
    done: list[str] = []
    left: list[str] = []
    for incident in page.incidents.order_by("pk"):
        if incident.status != IncidentStatus.OPEN:
            left.append(f"#{incident.pk} is {incident.get_status_display().lower()}")
            continue
        try:
            if escalate:
                tier = incident_escalate(user=user, incident=incident, source=source)
                done.append(f"{_named(incident)} (tier {tier} paged)")
            else:
                incident_acknowledge(user=user, incident=incident, source=source)
                done.append(_named(incident))
        except StateConflict as exc:
            left.append(exc.message.rstrip("."))
    if done:
        page.answered_at = timezone.now()
        page.save(update_fields=["answered_at"])
    verb = "Escalated" if escalate else "Acknowledged"
    said = f"{verb} {', '.join(done)}." if done else "Nothing was done."
    return f"{said} {'; '.join(left)}." if left else said


def _sms_parse(body: str) -> tuple[str, str]:
    """("help" | "ack" | "escalate" | "", the code)."""
    words = body.upper().split()
    if words in (["HELP"], ["?"]):
        return "help", ""
    if len(words) == 2 and words[0] == "ACK":
        words = words[1:]
    if words and words[0].isdigit() and len(words[0]) <= 8:
        if len(words) == 1 or words[1:] in (["A"], ["ACK"]):
            return "ack", words[0]
        if words[1:] in (["E"], ["ESC"]):
            return "escalate", words[0]
    return "", ""


def sms_reply_apply(*, phone: str, body: str) -> tuple[str, str]:
    """An SMS from ``phone``: (the answer to text back, the outcome to record)."""
    user = phone_owner(phone)
    if user is None:
        return NOT_REGISTERED, "unknown sender"
    action, code = _sms_parse(body)
    usage = "Reply with a page's code to acknowledge its incidents (4821), or the code and E to escalate (4821 E)."
    if action == "help":
        return f"ETL Monitor: {usage}", f"help for {user}"
    if not action:
        return f"Not understood. {usage}", f"not understood from {user}"
    page = (
        Page.objects.filter(method=PageMethod.SMS, phone=phone, code=code, created_at__gte=_answerable_since())
        .order_by("-created_at", "-pk")
        .first()
    )
    if page is None:
        hours = settings.PAGE_ANSWER_HOURS
        return f"No page with code {code} was sent to this number in the last {hours} h.", f"unknown code from {user}"
    try:
        said = page_answer(user=user, page=page, escalate=action == "escalate", source="sms")
    except PermissionRefused as exc:
        return exc.message, f"refused to {user}: {exc.message}"
    return said, f"{user}: {said}"


@twilio_webhook("sms")
def sms_inbound(request: HttpRequest) -> Handled:
    """An inbound SMS: a reply to a page (see the module docstring)."""
    answer, outcome = sms_reply_apply(phone=request.POST.get("From", ""), body=request.POST.get("Body", ""))
    response = MessagingResponse()
    response.message(answer)
    return str(response), outcome


# --- calls -----------------------------------------------------------------------------------------


def _answerable_since() -> Any:
    return timezone.now() - dt.timedelta(hours=settings.PAGE_ANSWER_HOURS)


def _voice_page(page_id: int) -> Page | None:
    """The call's page, while it may still be answered."""
    pages = Page.objects.filter(pk=page_id, method=PageMethod.VOICE, created_at__gte=_answerable_since())
    return pages.select_related("user").first()


def twilio_receipts_prune(now: dt.datetime | None = None) -> int:
    """Delete receipts older than twice PAGE_ANSWER_HOURS (a replay of such a request names a page
    that can no longer be answered). Returns how many were deleted."""
    now = now or timezone.now()
    cutoff = now - dt.timedelta(hours=2 * settings.PAGE_ANSWER_HOURS)
    deleted, _ = TwilioWebhookReceipt.objects.filter(received_at__lt=cutoff).delete()
    return deleted


def page_summary(page: Page) -> str:
    """What the call says about the page's incidents (words, not symbols: it is spoken)."""
    incidents = list(page.incidents.order_by("pk"))
    spoken = []
    for incident in incidents[:SPOKEN_INCIDENTS]:
        state = "" if incident.status == IncidentStatus.OPEN else f", {incident.get_status_display().lower()}"
        spoken.append(f"Incident {incident.pk}, {incident.get_severity_display()}: {incident.title}{state}.")
    if len(incidents) > SPOKEN_INCIDENTS:
        spoken.append(f"And {len(incidents) - SPOKEN_INCIDENTS} more.")
    count = f"{len(incidents)} incident{'s' if len(incidents) != 1 else ''}"
    return " ".join([f"This is ETL Monitor, paging you about {count}.", *spoken])


def _prompt(response: VoiceResponse, page: Page, attempt: int, *, before: str = "") -> None:
    action = _public_url(reverse("twilio-voice-gather", args=[page.pk])) + f"?attempt={attempt}"
    gather = response.gather(num_digits=1, action=action, method="POST", timeout=10)
    gather.say(" ".join(filter(None, [before, page_summary(page), "Press 1 to acknowledge, 2 to escalate."])))
    response.say("No key was pressed. Goodbye.")


@twilio_webhook("voice")
def voice_answer(request: HttpRequest, page_id: int) -> Handled:
    """A paging call was answered: say the page's incidents and wait for one key."""
    response = VoiceResponse()
    page = _voice_page(page_id)
    if page is None:
        response.say("This page is not known to ETL Monitor, or has expired. Goodbye.")
        return str(response), f"unknown page {page_id}"
    _prompt(response, page, 1)
    return str(response), f"call of page {page.pk} answered"


@twilio_webhook("gather")
def voice_gather(request: HttpRequest, page_id: int) -> Handled:
    """A key pressed on a paging call: 1 acknowledges, 2 escalates, else the prompt again."""
    response = VoiceResponse()
    page = _voice_page(page_id)
    if page is None or page.user is None:
        response.say("This page is not known to ETL Monitor, or has expired. Goodbye.")
        return str(response), f"unknown page {page_id}"
    digits = request.POST.get("Digits", "")
    if digits in ("1", "2"):
        try:
            said = page_answer(user=page.user, page=page, escalate=digits == "2", source="voice")
        except PermissionRefused as exc:
            said = exc.message
        response.say(f"{said} Goodbye.")
        response.hangup()
        return str(response), f"{page.user} pressed {digits}: {said}"
    try:
        attempt = int(request.GET.get("attempt", "1"))
    except ValueError:
        attempt = VOICE_ATTEMPTS
    if attempt >= VOICE_ATTEMPTS:
        response.say("No valid key was pressed. Goodbye.")
        return str(response), f"{page.user} pressed {digits or 'nothing'}: gave up"
    _prompt(response, page, attempt + 1, before="Sorry, that key does nothing.")
    return str(response), f"{page.user} pressed {digits or 'nothing'}: prompted again"


# --- delivery status -------------------------------------------------------------------------------


def page_status_apply(*, sid: str, status: str, error_code: str = "") -> str:
    """Record Twilio's status of the page sent as ``sid``; write a failure on its incidents'
    timelines (once: only on the change into it). The outcome, in words."""
    page = (
        Page.objects.select_for_update(of=("self",)).select_related("user").filter(external_id=sid).first()
        if sid
        else None
    )
    if page is None:
        return f"no page sent as {sid or '(no sid)'}"
    if STATUS_RANK.get(status, 0) < STATUS_RANK.get(page.status, 0) or status == page.status:
        return f"page {page.pk}: {status} ignored (already {page.status})"
    page.status, page.error_code = status[:20], error_code[:10]
    page.save(update_fields=["status", "error_code"])
    person = page.user.get_username() if page.user else page.phone
    error = f"{error_code} {TWILIO_ERRORS.get(error_code, 'Twilio error')}" if error_code else ""
    if page.method == PageMethod.SMS and status in SMS_NOT_DELIVERED:
        note = f"SMS to {person} {status}" + (f": {error}" if error else "")
    elif page.method == PageMethod.VOICE and status in CALL_NOT_ANSWERED:
        note = f"Call to {person} not answered ({status})" + (f": {error}" if error else "")
        note += "; escalation goes on at the timeout"
    else:
        return f"page {page.pk}: {status}"
    for incident in page.incidents.all():
        incident_note(
            incident, EventKind.NOTIFY_FAILED, note, {"page": page.pk, "status": status, "error_code": error_code}
        )
    return f"page {page.pk}: {note}"


@twilio_webhook("status")
def status_callback(request: HttpRequest) -> Handled:
    """Twilio's status callback of an SMS or a call."""
    post = request.POST
    outcome = page_status_apply(
        sid=post.get("MessageSid") or post.get("CallSid") or "",
        status=(post.get("MessageStatus") or post.get("CallStatus") or "").lower(),
        error_code=post.get("ErrorCode", ""),
    )
    return str(MessagingResponse()), outcome
