"""``/metrics``: Prometheus exposition of every web worker's counters."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from signals_app.metrics import exposition

LOOPBACK = ("127.0.0.1", "::1")
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Open to a scraper holding ``METRICS_TOKEN`` (``Authorization: Bearer``); without that
    setting, only to requests from this machine (Prometheus beside the app) that no proxy forwarded."""
    expected = settings.METRICS_TOKEN
    if expected:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            return HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
    elif request.META.get("REMOTE_ADDR") not in LOOPBACK:
        return HttpResponse("Set METRICS_TOKEN to scrape from another host.\n", status=403, content_type="text/plain")
    elif any(header in request.META for header in FORWARDED_HEADERS):
        # A reverse proxy on this machine makes every visitor look local: only a token is trusted then.
        return HttpResponse("Set METRICS_TOKEN to scrape through a proxy.\n", status=403, content_type="text/plain")
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)
