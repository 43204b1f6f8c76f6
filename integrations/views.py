"""Inbound webhooks (authenticated by their own shared secrets, not by users)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from etl_monitor.errors import InvalidInput
from etl_monitor.request_input import JSONRefused, json_loads
from integrations import alertmanager, jira

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


def _body(request: HttpRequest) -> bytes | None:
    """The body if it is within MAX_BODY, else None. A declared Content-Length over the cap is
    refused before anything is read; a body without one is read up to the cap plus a byte."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None
    try:
        raw = request.body[: MAX_BODY + 1]
    except RequestDataTooBig:
        return None
    return raw if len(raw) <= MAX_BODY else None


def _json(raw: bytes, *, nul_allowed: bool = False) -> object:
    """The parsed body (etl_monitor.request_input: the platform's one JSON reader); ValueError when
    it is not JSON, and JSONRefused, saying why, when it nests too deep or holds a NUL."""
    return json_loads(raw, nul_allowed=nul_allowed)


TOO_LARGE = {"detail": f"Payload too large: the limit is {MAX_BODY} bytes (1 MiB)."}


@csrf_exempt
@require_POST
def jira_webhook(request: HttpRequest) -> JsonResponse:
    """Jira issue events: status changes, comments, assignee. 401 without the shared secret
    (HMAC ``X-Hub-Signature``; or the secret in ``X-ETL-Monitor-Secret``, ``Authorization: Bearer``
    or ``?secret=``), and nothing changes; repeats of a body are answered ``duplicate``; an event
    whose signed timestamp is outside the window is refused (400)."""
    if not settings.JIRA_WEBHOOK_SECRET:
        return JsonResponse({"detail": "The Jira webhook is not configured (JIRA_WEBHOOK_SECRET)."}, status=404)
    raw = _body(request)
    if raw is None:
        return JsonResponse(TOO_LARGE, status=413)
    given = jira.secret_given(
        header=request.headers.get("X-ETL-Monitor-Secret", ""),
        authorization=request.headers.get("Authorization", ""),
        query=request.GET.get("secret", ""),
    )
    if not jira.signature_valid(raw, header_signature=request.headers.get("X-Hub-Signature", ""), given_secret=given):
        logger.warning("Jira webhook refused: missing or wrong secret (from %s)", request.META.get("REMOTE_ADDR"))
        return JsonResponse({"detail": "Missing or wrong webhook secret."}, status=401)
    try:
        payload = _json(raw)
    except JSONRefused as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    except ValueError:
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(payload, dict) or not payload.get("webhookEvent"):
        return JsonResponse({"detail": "Not a Jira webhook payload: no webhookEvent."}, status=400)
    try:
        outcome = jira.webhook_apply(
            payload, delivery_id=request.headers.get("X-Atlassian-Webhook-Identifier", ""), raw=raw
        )
    except InvalidInput as exc:
        return JsonResponse({"detail": str(exc), "errors": exc.errors}, status=400)
    return JsonResponse(outcome)


@csrf_exempt
@require_POST
def alertmanager_webhook(request: HttpRequest) -> JsonResponse:
    """Alertmanager's webhook (payload version 4): each alert opens, fires again or resolves the
    incident of its fingerprint (see ``integrations.alertmanager``). 401 without the bearer token,
    and nothing changes; a payload with any invalid alert is refused whole (400), and so is one
    over MAX_BODY or with more than ALERTMANAGER_MAX_ALERTS alerts (413)."""
    if not settings.ALERTMANAGER_WEBHOOK_TOKEN:
        return JsonResponse(
            {"detail": "The Alertmanager webhook is not configured (ALERTMANAGER_WEBHOOK_TOKEN)."}, status=404
        )
    if not alertmanager.token_valid(request.headers.get("Authorization", "")):
        logger.warning(
            "Alertmanager webhook refused: missing or wrong bearer token (from %s)", request.META.get("REMOTE_ADDR")
        )
        return JsonResponse({"detail": "Missing or wrong bearer token."}, status=401)
    raw = _body(request)
    if raw is None:
        return JsonResponse(TOO_LARGE, status=413)
    try:
        payload = _json(raw, nul_allowed=True)  # alertmanager drops control characters, NUL included
    except JSONRefused as exc:
        return JsonResponse({"detail": str(exc)}, status=400)
    except ValueError:
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    try:
        alerts = alertmanager.payload_parse(payload)
    except alertmanager.TooManyAlerts as exc:
        return JsonResponse({"detail": str(exc), "errors": exc.errors}, status=413)
    except InvalidInput as exc:
        return JsonResponse({"detail": str(exc), "errors": exc.errors}, status=400)
    return JsonResponse(alertmanager.alerts_apply(alerts))
