"""The checklist's buttons: skip or un-skip a step (Admin), hide or bring back the checklist (oneself).

Thin: POST only (CSRF-checked by the middleware), signed in through the admin, one service call,
back to the overview with a message. A refusal is a 403 naming what the role does not allow.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from etl_monitor.errors import InvalidInput, PermissionRefused
from onboarding import services
from onboarding.models import Step


def _back(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("operations:overview") + "#onboarding")


def _step_action(service: Callable[..., object], done: str) -> Callable[[HttpRequest, str], HttpResponse]:
    def view(request: HttpRequest, step: str) -> HttpResponse:
        try:
            service(user=request.user, step=step)
        except PermissionRefused as exc:
            raise PermissionDenied(exc.message) from None
        except InvalidInput as exc:
            raise Http404(" ".join(exc.errors["step"])) from None
        messages.success(request, f"“{Step(step).label}”: {done}")
        return _back(request)

    return view


skip = _step_action(services.step_skip, "skipped for everyone. An Admin can undo this on the checklist.")
skip_undo = _step_action(services.step_skip_undo, "no longer skipped.")


def dismiss(request: HttpRequest) -> HttpResponse:
    services.checklist_dismiss(user=request.user)
    messages.info(request, "The Get started checklist is hidden. Bring it back from “All models”.")
    return _back(request)


def restore(request: HttpRequest) -> HttpResponse:
    services.checklist_restore(user=request.user)
    return _back(request)


def _post_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in to the admin (its login for anonymous visitors), POST only."""
    return admin.site.admin_view(require_POST(view))


skip_view = _post_page(skip)
skip_undo_view = _post_page(skip_undo)
dismiss_view = _post_page(dismiss)
restore_view = _post_page(restore)
