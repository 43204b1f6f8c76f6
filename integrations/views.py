"""Inbound webhooks (authenticated by their own shared secrets, not by users)."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integrations import jira

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


@csrf_exempt
@require_POST
def jira_webhook(request: HttpRequest) -> JsonResponse:
    """Jira issue events: status changes, comments, assignee. 401 without the shared secret
    (HMAC ``X-Hub-Signature`` or ``?secret=``), and nothing changes; repeats are answered
    ``duplicate``."""
    if not settings.JIRA_WEBHOOK_SECRET:
        return JsonResponse({"detail": "The Jira webhook is not configured (JIRA_WEBHOOK_SECRET)."}, status=404)
    raw = request.body[: MAX_BODY + 1]
    if len(raw) > MAX_BODY:
        return JsonResponse({"detail": "Payload too large."}, status=413)
    if not jira.signature_valid(
        raw,
        header_signature=request.headers.get("X-Hub-Signature", ""),
        given_secret=request.GET.get("secret", "") or request.headers.get("X-ETL-Monitor-Secret", ""),
    ):
        logger.warning("Jira webhook refused: missing or wrong secret (from %s)", request.META.get("REMOTE_ADDR"))
        return JsonResponse({"detail": "Missing or wrong webhook secret."}, status=401)
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(payload, dict) or not payload.get("webhookEvent"):
        return JsonResponse({"detail": "Not a Jira webhook payload: no webhookEvent."}, status=400)
    outcome = jira.webhook_apply(
        payload, delivery_id=request.headers.get("X-Atlassian-Webhook-Identifier", ""), raw=raw
    )
    return JsonResponse(outcome)
