"""The admin base for models with history: history pages show the past and change nothing.

simple-history's "history/<id>" page saves the old version it shows when it is POSTed to (a
revert), for anyone allowed to *view* the object, through ``save_model`` — which for some
models has no role check of its own. ``SIMPLE_HISTORY_REVERT_DISABLED`` only hides the button.
Reverting would also bypass the services (four-eyes, field protection), so it is refused here
for everyone; an old value is restored by editing the object, like any change.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from simple_history.admin import SimpleHistoryAdmin


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """``SimpleHistoryAdmin`` whose history pages answer only GET (405 to anything else)."""

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return super().history_form_view(request, object_id, version_id, extra_context)
