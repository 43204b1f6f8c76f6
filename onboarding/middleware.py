"""Records the first loader page each person opens, for the checklist's dashboards step.

A middleware, not a call in the view: the operations app sits below this one and must not import it.
It looks at the resolved URL after the response, so it costs nothing on every other page, and
once a person's visit is recorded their session remembers it (no query on later visits).
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from onboarding.services import loader_page_visit_record

LOADER_PAGE = "operations:loader"
SESSION_KEY = "onboarding_loader_page_seen"


class LoaderPageVisitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if (
            match is not None
            and match.view_name == LOADER_PAGE
            and response.status_code == 200
            and request.user.is_authenticated
            and not request.session.get(SESSION_KEY)
        ):
            loader_page_visit_record(user=request.user, loader_code=match.kwargs.get("loader_code", ""))
            request.session[SESSION_KEY] = True
        return response
