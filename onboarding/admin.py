"""Read-only lists of the checklist's records: when each step was first done (completion, for the
whole installation), the first loader page each person opened, and who hid the checklist."""

from __future__ import annotations

from django.contrib import admin

from etl_monitor.admin_input import ViewOnlyAdmin
from onboarding.models import ChecklistDismissal, LoaderPageVisit, StepRecord


@admin.register(StepRecord)
class StepRecordAdmin(ViewOnlyAdmin):
    list_display = ("step", "first_done_at", "skipped_at", "skipped_by")
    list_select_related = ("skipped_by",)


@admin.register(LoaderPageVisit)
class LoaderPageVisitAdmin(ViewOnlyAdmin):
    list_display = ("user", "loader_code", "visited_at")
    list_select_related = ("user",)


@admin.register(ChecklistDismissal)
class ChecklistDismissalAdmin(ViewOnlyAdmin):
    list_display = ("user", "dismissed_at")
    list_select_related = ("user",)
