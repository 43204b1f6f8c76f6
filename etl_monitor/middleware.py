"""Request hygiene shared by every view."""

from __future__ import annotations

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
