"""The calendar feed URL: the token in it is the only credential (calendar apps send no cookie)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from oncall import ical
from oncall.services import calendar_token_find


@require_GET
def calendar_feed_view(request: HttpRequest, token: str) -> HttpResponse:
    """GET /oncall/calendar/<token>.ics — 404 for an unknown or revoked token, alike."""
    found = calendar_token_find(token)
    if found is None:
        raise Http404("No such calendar feed.")
    response = HttpResponse(ical.calendar_feed(found, timezone.now()), content_type="text/calendar; charset=utf-8")
    response["Cache-Control"] = "private, max-age=300"
    response["Content-Disposition"] = 'inline; filename="on-call.ics"'
    return response
