"""Request hygiene shared by every view."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import resolve

from etl_monitor.log_filters import CORRELATION_ID, REQUEST_ID, safe_id
from etl_monitor.request_input import NUL_MESSAGE, form_nul_field

FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
access_logger = logging.getLogger("etl_monitor.requests")


class ProbeMiddleware:
    """Answer ``/healthz``, ``/readyz`` and ``/metrics`` whatever the ``Host`` header says.

    Kubernetes probes, container health checks and Prometheus reach a pod by its address, so their
    ``Host`` is ``10.1.2.3:8000``, which ``ALLOWED_HOSTS`` (the public name) rightly refuses, and
    ``SECURE_SSL_REDIRECT`` would send them to HTTPS. These three views never build a URL from the
    host, need no session or CSRF token, and carry their own access rule (``/metrics``: the
    ``METRICS_TOKEN`` bearer or loopback only), so they are served here, first, and every other
    path keeps Django's host validation. Only GET and HEAD are answered here.
    """

    PATHS = frozenset({"/healthz", "/readyz", "/metrics"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in self.PATHS or request.method not in ("GET", "HEAD"):
            return self.get_response(request)
        match = resolve(request.path_info)  # the URLconf's own views (etl_monitor.urls)
        request.resolver_match = match  # the request metrics label it by its view, as any other
        return match.func(request, *match.args, **match.kwargs)


class RejectNulMiddleware:
    """Answer 400 to a URL, query parameter or posted form field holding a NUL character.

    No identifier or filter of ours can contain one, and PostgreSQL refuses NUL in text, so such a
    request would otherwise end as a server error deep in a query (or, in the admin, while showing
    the form again). Form posts are Django's own parsing (the admin, the login pages) and DRF's;
    JSON bodies are checked by the parsers (``etl_monitor.request_input``), PUT and PATCH forms by
    DRF's (Django parses only POST).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or any(
            "\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()
        ):
            return HttpResponseBadRequest("NUL characters are not allowed in URLs.\n", content_type="text/plain")
        if request.method == "POST" and request.content_type in FORM_CONTENT_TYPES:
            try:
                field = form_nul_field(request.POST.lists())
            except MultiPartParserError as exc:  # Django would answer 400 too, but in HTML
                return JsonResponse(
                    {"detail": f"Multipart form parse error - {exc}", "code": "parse_error"}, status=400
                )
            if field is not None:
                return JsonResponse({field: [NUL_MESSAGE]}, status=400)
        return self.get_response(request)


class RequestContextMiddleware:
    """Gives each request an id for its log lines and answers it in ``X-Request-ID``.

    The id is the ingress's ``X-Request-ID`` when it sent a well-formed one (so the proxy's log and
    ours match), a new one otherwise; ``X-Correlation-ID`` (a loader's run, across services) is kept
    the same way. With ``LOG_FORMAT=json`` it also writes the request log line (gunicorn's access
    log is then off): method, redacted path, status, duration, ids."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = safe_id(request.headers.get("X-Request-ID")) or uuid.uuid4().hex
        request_token = REQUEST_ID.set(request_id)
        correlation_token = CORRELATION_ID.set(safe_id(request.headers.get("X-Correlation-ID")) or "-")
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            if settings.LOG_FORMAT == "json":
                access_logger.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.get_full_path(),
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
            return response
        finally:
            REQUEST_ID.reset(request_token)
            CORRELATION_ID.reset(correlation_token)


# The methods a label may name; any other (clients may invent them) is counted as "other".
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    """The method as a /metrics label: one of STANDARD_METHODS or ``other``."""
    return method if method in STANDARD_METHODS else "other"


class RequestMetricsMiddleware:
    """Counts and times every HTTP request for /metrics (by method, view name and status).

    Every label has a bounded set of values whatever clients send: the method is one of seven or
    ``other``, the view is the URL pattern's name (never the path; ``unmatched`` when no pattern
    matched), the status is the one we answered. A label per invented method or per 404 path would
    add a series each, for good, in every worker and in Prometheus.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from etl_monitor.metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None else "unmatched"
        method = method_label(request.method)
        HTTP_REQUESTS.labels(method=method, view=view, status=str(response.status_code)).inc()
        HTTP_REQUEST_SECONDS.labels(method=method, view=view).observe(time.perf_counter() - started)
        return response
