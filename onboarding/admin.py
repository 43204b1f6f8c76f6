"""Read-only lists of the checklist's records: when each step was first done (completion, for the
whole installation), the first loader page each person opened, and who hid the checklist."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from onboarding.models import ChecklistDismissal, LoaderPageVisit, StepRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StepRecord)
class StepRecordAdmin(ReadOnlyAdmin):
    list_display = ("step", "first_done_at", "skipped_at", "skipped_by")
    list_select_related = ("skipped_by",)


@admin.register(LoaderPageVisit)
class LoaderPageVisitAdmin(ReadOnlyAdmin):
    list_display = ("user", "loader_code", "visited_at")
    list_select_related = ("user",)


@admin.register(ChecklistDismissal)
class ChecklistDismissalAdmin(ReadOnlyAdmin):
    list_display = ("user", "dismissed_at")
    list_select_related = ("user",)
