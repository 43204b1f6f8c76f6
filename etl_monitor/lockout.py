"""Login lockout: who the client is, and what a locked-out login is told.

django-axes counts failed password checks (every login surface goes through Django's
``authenticate``) per account and per client address; these are the two hooks settings
give it. The client address is the one the trusted proxies saw, never what a client
wrote into X-Forwarded-For itself: otherwise each guess could come "from" a new address.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or behind ``TRUSTED_PROXY_COUNT`` = N proxies the Nth
    address from the right of X-Forwarded-For (the one the outermost trusted proxy saw).

    The same rule as DRF's ``NUM_PROXIES`` (set from the same setting), so throttles and the
    lockout agree. A value that is not an address falls back to REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR") or None
    count = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if count <= 0 or not forwarded.strip():
        return remote
    addresses = [part.strip() for part in forwarded.split(",")]
    candidate = addresses[-min(count, len(addresses))]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def lockout_retry_at(request: HttpRequest) -> dt.datetime:
    """When the client may try again: the cool-off counts from the latest failure (a guess
    during the lockout starts it again)."""
    attempted = getattr(request, "axes_attempt_time", None) or timezone.now()
    return attempted + settings.AXES_COOLOFF_TIME


def lockout_message(retry_at: dt.datetime) -> str:
    minutes = math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    return (
        f"Too many failed logins for this account or from this address: login is locked for {minutes} "
        f"minutes. Try again after {retry_at.strftime('%Y-%m-%d %H:%M:%S UTC')}. "
        "An administrator can lift the lock earlier (Axes → Access attempts)."
    )


def _wants_json(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return request.path.startswith("/api/v1/") or ("json" in accept and "html" not in accept)


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """django-axes' answer to a locked-out login (``AXES_LOCKOUT_CALLABLE``): 429 with Retry-After;
    JSON ``{"detail", "code": "locked_out", "retry_after"}`` for the API, a page for browsers."""
    retry_at = lockout_retry_at(request).astimezone(dt.UTC)
    seconds = max(1, math.ceil((retry_at - timezone.now()).total_seconds()))
    message = lockout_message(retry_at)
    if _wants_json(request):
        response: HttpResponse = JsonResponse(
            {"detail": message, "code": "locked_out", "retry_after": seconds}, status=429
        )
    else:
        context = {
            "title": "Login locked",
            "message": message,
            "retry_at": retry_at,
            "site_header": settings.ETL_MONITOR_SITE_HEADER,
            "site_title": settings.ETL_MONITOR_SITE_TITLE,
        }
        response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = str(seconds)
    return response
