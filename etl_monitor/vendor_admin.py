"""Admins of the libraries we install (Django's users and groups, Celery beat's schedules), made
safe for wrong input as ours are: a wrong value is the form's error, never a 500.

- django-celery-beat's crontab page shows a read-only "human readable" line computed from the
  fields as typed; when a field is wrong (``-1``) and the form is shown again with its error,
  computing that line raised celery's ParseException. Here it says the schedule is not valid
  and the form's own field errors say why.
- Django's user and group pages take permission and group ids unchecked; a number beyond the
  key's range reached SQLite and raised OverflowError. They check keys as our admins do.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django_celery_beat.admin import CrontabScheduleAdmin
from django_celery_beat.models import CrontabSchedule

from etl_monitor.admin_input import KeyCheckingAdminMixin


class SafeCrontabScheduleAdmin(CrontabScheduleAdmin):
    @admin.display(description="Human readable")
    def human_readable(self, obj: CrontabSchedule) -> str:
        try:
            return obj.human_readable
        except Exception:  # noqa: BLE001 — celery's parser raises its own types for any wrong field
            return "Not a valid schedule (see the fields below)."


class KeyCheckingGroupAdmin(KeyCheckingAdminMixin, GroupAdmin):
    pass


class KeyCheckingUserAdmin(KeyCheckingAdminMixin, UserAdmin):
    pass


for model, model_admin in (
    (CrontabSchedule, SafeCrontabScheduleAdmin),
    (Group, KeyCheckingGroupAdmin),
    (User, KeyCheckingUserAdmin),
):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
