"""Request hygiene shared by every view."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RejectNulMiddleware:
    """Answer 400 to a URL or query parameter holding a NUL character.

    No identifier or filter of ours can contain one, and PostgreSQL refuses NUL
    in text, so such a request would otherwise end as a server error deep in a query.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            return HttpResponseBadRequest("NUL characters are not allowed in URLs.\n", content_type="text/plain")
        return self.get_response(request)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request for /metrics (by method, view name and status)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from etl_monitor.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else "unmatched"
        HTTP_REQUESTS.labels(method=request.method, view=view, status=str(response.status_code)).inc()
        HTTP_REQUEST_SECONDS.labels(method=request.method, view=view).observe(time.perf_counter() - started)
        return response
