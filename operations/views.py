"""The operations pages: the overview (the admin's landing page and ``/``), the stock model index
one click away, each loader's operational page and its chart data.

Thin: check the role, read the filters, call one selector, render. Every page needs a signed-in
account holding ``loaders.view_loader`` (Viewer and above); the chart data needs
``signals_app.view_run`` as well (the anomaly bands, read from runs and signals, also
``signals_app.view_signal``). Anonymous visitors go to the login page; the JSON endpoint
answers 401/403 instead, as a script would expect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import quote, urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from etl_monitor.errors import InvalidInput
from incidents.anomaly.band import BandUnavailable, SeriesCard, anomaly_band, loader_anomaly_series
from incidents.models import DetectionRule
from loaders.models import Loader
from operations import selectors
from operations.selectors import Health, OverviewFilters

VIEW_PERMISSION = "loaders.view_loader"
CHART_PERMISSIONS = ("loaders.view_loader", "signals_app.view_run")
BAND_PERMISSIONS = (*CHART_PERMISSIONS, "signals_app.view_signal")
BAND_DAYS = 14  # the loader page's anomaly charts: the last two weeks


def _page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """An admin page for Viewer and above: the admin's login for anonymous visitors, 403 without a role."""

    @wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.has_perm(VIEW_PERMISSION):
            raise PermissionDenied("Your role does not allow you to see loaders.")
        return view(request, *args, **kwargs)

    return admin.site.admin_view(checked)


def overview(request: HttpRequest) -> HttpResponse:
    try:
        filters = OverviewFilters.from_query(request.GET)
        data = selectors.overview_read(user=request.user, filters=filters)
        errors: dict[str, list[str]] = {}
    except InvalidInput as exc:
        # Say which filter is wrong and show the unfiltered overview below it.
        filters, errors = OverviewFilters(), exc.errors
        data = selectors.overview_read(user=request.user, filters=filters)
    # One reverse() for every tile: a page of 120 tiles would otherwise resolve 240 URLs.
    page_of = reverse("operations:loader", args=["CODE"])
    for tile in data.tiles:
        tile.url = page_of.replace("CODE", quote(tile.code))
    context = {
        **admin.site.each_context(request),
        "title": "Operations overview",
        "overview": data,
        "filters": filters,
        "filter_errors": errors,
        # (value, word, loaders, the query string that filters by it with the team and tag kept)
        "statuses": [(h.value, h.label, data.counts[h.value], filters.query(status=h.value)) for h in Health],
        "previous_query": filters.query(page=data.page - 1) if data.page > 1 else None,
        "next_query": filters.query(page=data.page + 1) if data.page < data.pages else None,
    }
    return TemplateResponse(request, "admin/index.html", context, status=400 if errors else 200)


def models_index(request: HttpRequest) -> HttpResponse:
    """Django's own index of every model (the landing page before the overview took its place)."""
    context = {
        **admin.site.each_context(request),
        "title": "All models",
        "app_list": admin.site.get_app_list(request),
    }
    return TemplateResponse(request, "admin/models_index.html", context)


def loader_page(request: HttpRequest, loader_code: str) -> HttpResponse:
    loader = get_object_or_404(Loader.objects.select_related("owner"), loader_code=loader_code)
    base = request.build_absolute_uri("/").rstrip("/")
    context = {
        **admin.site.each_context(request),
        "title": f"{loader.loader_code}: operations",
        "loader": loader,
        "health": selectors.loader_health(user=request.user, loader=loader),
        "contract": selectors.loader_contract(user=request.user, loader=loader),
        "runs": selectors.loader_recent_runs(loader=loader),
        "incidents": selectors.loader_incidents(loader=loader),
        "tokens": selectors.loader_tokens(loader=loader),
        "snippets": loader_snippets(base, loader.loader_code),
        "can_change": request.user.has_perm("loaders.change_loader"),
        "anomaly_series": [(card, _band_url(loader, card)) for card in loader_anomaly_series(loader)],
        "band_days": BAND_DAYS,
    }
    return TemplateResponse(request, "operations/loader.html", context)


def _band_url(loader: Loader, card: SeriesCard) -> str:
    url = reverse("operations:loader-band", args=[loader.loader_code, card.rule_id])
    return f"{url}?{urlencode({'subject': card.subject})}"


def loader_snippets(base: str, code: str) -> list[tuple[str, str]]:
    """Ready-made lines for instrumenting the loader; the token stays a placeholder because only
    its hash is stored (docs/ingest-api.md has the full API). Public: the onboarding checklist
    shows the same lines."""
    ping = f"{base}/ping/$PING_KEY/{code}"
    return [
        (
            "Ping URLs (GET or POST)",
            f"start:       {ping}/start\nsuccess:     {ping}\nfailure:     {ping}/fail\nexit status: {ping}/<0-255>",
        ),
        (
            "curl with a ping key",
            f'curl -fsS -m 10 --retry 3 "{ping}/start"\n./run-my-job.sh\ncurl -fsS -m 10 --retry 3 "{ping}/$?"',
        ),
        (
            "REST API with an ingest token",
            f"curl -s -X POST -H \"Authorization: Bearer $ETL_MONITOR_TOKEN\" -H 'Content-Type: application/json' \\\n"
            f'     "{base}/api/v1/runs/" -d \'{{"loader_code": "{code}"}}\'',
        ),
        (
            "Python client (signals_app/client.py)",
            "from etl_monitor_client import Monitor\n\n"
            f'monitor = Monitor("{base}", token=os.environ["ETL_MONITOR_TOKEN"])\n'
            f'with monitor.run("{code}") as run:\n'
            "    rows = load()\n"
            "    run.rows(read=len(rows), written=len(rows))",
        ),
    ]


def loader_chart(request: HttpRequest, loader_code: str) -> JsonResponse:
    """The loader's chart data as JSON (selectors.loader_chart_data says what it holds)."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Sign in to read chart data."}, status=401)
    if not all(request.user.has_perm(p) for p in CHART_PERMISSIONS):
        return JsonResponse({"detail": "Your role does not allow you to see runs."}, status=403)
    loader = get_object_or_404(Loader, loader_code=loader_code)
    return JsonResponse(selectors.loader_chart_data(user=request.user, loader=loader))


def loader_band(request: HttpRequest, loader_code: str, rule_id: int) -> JsonResponse:
    """One anomaly series of the loader over the last ``BAND_DAYS`` days with its expected band
    (``subject``: the series, default the loader itself)."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Sign in to read chart data."}, status=401)
    if not all(request.user.has_perm(p) for p in BAND_PERMISSIONS):
        return JsonResponse({"detail": "Your role does not allow you to see runs and signals."}, status=403)
    loader = get_object_or_404(Loader, loader_code=loader_code)
    rule = get_object_or_404(DetectionRule, pk=rule_id)
    subject = request.GET.get("subject", loader.loader_code)
    if subject != loader.loader_code and not subject.startswith(f"{loader.loader_code}/"):
        return JsonResponse({"subject": [f"Not a series of {loader.loader_code}: {subject!r}."]}, status=400)
    until = timezone.now()
    try:
        band = anomaly_band(rule, subject, since=until - dt.timedelta(days=BAND_DAYS), until=until, loader=loader)
    except BandUnavailable as exc:
        return JsonResponse({"detail": f"No expected band: {exc}."}, status=404)
    return JsonResponse(band.as_json())


overview_view = _page(overview)
models_index_view = _page(models_index)
loader_page_view = _page(loader_page)
