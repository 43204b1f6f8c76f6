"""The admin base for models with history: history pages show the past and change nothing.

simple-history's "history/<id>" page saves the old version it shows when it is POSTed to (a
revert), for anyone allowed to *view* the object, through ``save_model`` — which for some
models has no role check of its own. ``SIMPLE_HISTORY_REVERT_DISABLED`` only hides the button.
Reverting would also bypass the services (four-eyes, field protection), so it is refused here
for everyone; an old value is restored by editing the object, like any change.

Both pages look the ids of their URL up as they come ("abc" for an integer key raised ValueError,
a 500): an id the key cannot hold is a page that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin.utils import unquote
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from simple_history.admin import SimpleHistoryAdmin

from etl_monitor.admin_input import key_holds


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """``SimpleHistoryAdmin`` whose history pages answer only GET (405 to anything else), and 404
    to ids that cannot name a row."""

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        if not key_holds(self.opts.pk, unquote(object_id)):
            raise Http404
        return super().history_view(request, object_id, extra_context)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        history_key = self.model.history.model._meta.pk
        if not (key_holds(self.opts.pk, unquote(object_id)) and key_holds(history_key, version_id)):
            raise Http404
        return super().history_form_view(request, object_id, version_id, extra_context)
