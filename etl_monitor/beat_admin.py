"""Celery beat's crontab admin, made safe for a wrong value.

django-celery-beat's page shows a read-only "human readable" line computed from the fields as
typed; when a field is wrong (``-1``) and the form is shown again with its error, computing that
line raised celery's ParseException and the page answered 500. Here it says the schedule is not
valid and the form's own field errors say why.
"""

from __future__ import annotations

from django.contrib import admin
from django_celery_beat.admin import CrontabScheduleAdmin
from django_celery_beat.models import CrontabSchedule


class SafeCrontabScheduleAdmin(CrontabScheduleAdmin):
    @admin.display(description="Human readable")
    def human_readable(self, obj: CrontabSchedule) -> str:
        try:
            return obj.human_readable
        except Exception:  # noqa: BLE001 — celery's parser raises its own types for any wrong field
            return "Not a valid schedule (see the fields below)."


admin.site.unregister(CrontabSchedule)
admin.site.register(CrontabSchedule, SafeCrontabScheduleAdmin)
