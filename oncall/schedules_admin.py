"""Schedules, rotations, overrides and calendar feeds in the admin.

A schedule's page holds everything about it: its layers (each with its people typed in turn
order), its current and coming overrides, who is on call now and the next 14 days in the
schedule's own time, and its calendar feeds. Operators edit; every other role reads. Every write
goes through ``oncall.services``: the forms run the services' checks so errors land on the
fields, and saving calls the services rather than the formsets.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from etl_monitor.admin import ServiceErrorMessagesMixin
from etl_monitor.errors import InvalidInput, PermissionRefused
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from oncall import services
from oncall.models import CalendarToken, Override, Rotation, Schedule
from oncall.schedules import SOURCE_OVERRIDE, local_moment, oncall_users, shifts, zone_of

User = get_user_model()

PANEL_DAYS = 14


def _active_people() -> QuerySet:
    return User.objects.filter(is_active=True).order_by("username")


# --- forms: the services' checks, their errors on the fields ------------------------------------


class ServiceCheckedForm(forms.ModelForm):
    """Runs its service's check (``check``) on the ``service_fields`` once the fields are clean,
    so the service's errors land on the fields they name; a form marked for deletion is not checked."""

    service_fields: tuple[str, ...] = ()

    def check(self, stored: Any, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors or cleaned.get("DELETE"):
            return cleaned
        model = self._meta.model
        stored = model.objects.get(pk=self.instance.pk) if self.instance.pk else None
        data = {name: cleaned.get(name) for name in self.service_fields if name in cleaned}
        try:
            self.check(stored, data)
        except InvalidInput as exc:
            for name, problems in exc.errors.items():
                self.add_error(name if name in self.fields else None, "; ".join(problems))
        return cleaned


class ScheduleForm(ServiceCheckedForm):
    service_fields = services.SCHEDULE_FIELDS

    class Meta:
        model = Schedule
        fields = services.SCHEDULE_FIELDS

    def check(self, stored: Schedule | None, data: dict[str, Any]) -> None:
        services.schedule_check(data=data, schedule=stored)


class RotationForm(ServiceCheckedForm):
    """A layer, its people typed in turn order (usernames or emails), as people say a rota."""

    members = forms.CharField(
        label="People, in turn order",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60, "placeholder": "alice, bob, carol"}),
        help_text="Usernames or emails, separated by commas or new lines; the first takes the first shift.",
    )

    service_fields = services.ROTATION_FIELDS

    class Meta:
        model = Rotation
        fields = services.ROTATION_FIELDS
        widgets = {"start_date": forms.DateInput(attrs={"type": "date"})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and "members" in self.fields:
            names = [member.user.get_username() for member in self.instance.members.select_related("user")]
            self.initial["members"] = ", ".join(names)

    def clean_members(self) -> list[Any]:
        names = [name for name in re.split(r"[\s,;]+", self.cleaned_data.get("members") or "") if name]
        found = {
            key.lower(): user
            for user in User.objects.filter(Q(username__in=names) | Q(email__in=names))
            for key in (user.get_username(), user.email)
            if key
        }
        unknown = [name for name in names if name.lower() not in found]
        if unknown:
            raise forms.ValidationError(f"Nobody is called {', '.join(unknown)}.")
        return [found[name.lower()] for name in names]

    def check(self, stored: Rotation | None, data: dict[str, Any]) -> None:
        schedule = stored.schedule if stored else Schedule()  # a new schedule's layer: saved with it
        members = self.cleaned_data.get("members")
        services.rotation_check(schedule=schedule, data=data, members=members, rotation=stored)


class OverrideForm(ServiceCheckedForm):
    service_fields = services.OVERRIDE_FIELDS

    class Meta:
        model = Override
        fields = services.OVERRIDE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("user", "covers"):
            if name in self.fields:
                self.fields[name].queryset = _active_people()

    def check(self, stored: Override | None, data: dict[str, Any]) -> None:
        services.override_check(schedule=stored.schedule if stored else Schedule(), data=data, override=stored)


# --- inlines --------------------------------------------------------------------------------------


class RotationInline(admin.StackedInline):
    model = Rotation
    form = RotationForm
    extra = 0
    verbose_name = "layer (rotation)"
    verbose_name_plural = "Layers (rotations): the highest layer with someone on call wins"
    fields = (
        ("name", "layer"),
        ("handoff", "handoff_time", "start_date"),
        ("restrict_start", "restrict_end"),
        "members",
    )

    def get_extra(self, request: HttpRequest, obj: Schedule | None = None, **kwargs: Any) -> int:
        return 1 if obj is None else 0  # a new schedule starts with its first layer to fill in

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        if self.has_change_permission(request, obj):
            return ()
        return ("name", "layer", "handoff", "handoff_time", "start_date", "restrict_start", "restrict_end", "members")

    @admin.display(description="people, in turn order")
    def members(self, obj: Rotation) -> str:
        return ", ".join(member.user.get_username() for member in obj.members.select_related("user")) or "—"


class OverrideInline(admin.TabularInline):
    """The overrides still to come or running (ended ones are in the overrides list)."""

    model = Override
    form = OverrideForm
    extra = 0
    fields = services.OVERRIDE_FIELDS
    verbose_name_plural = "Overrides, current and coming (over every layer)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Override]:
        return super().get_queryset(request).filter(end__gt=timezone.now()).select_related("user", "covers")


def _formset_save(request: HttpRequest, schedule: Schedule, formset: Any) -> None:
    """Save one inline's forms through the services (and record what changed for the history
    message Django writes, as ``formset.save()`` would)."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    is_rotation = formset.model is Rotation
    for form in formset.forms:
        stored = form.instance if form.instance.pk else None
        if formset._should_delete_form(form):
            if stored is not None:
                if is_rotation:
                    services.rotation_delete(user=request.user, rotation=stored)
                else:
                    services.override_delete(user=request.user, override=stored)
                formset.deleted_objects.append(stored)
            continue
        if not form.has_changed():
            continue
        if stored is not None:  # the form wrote its input on the instance: give the service the stored row
            stored = formset.model.objects.get(pk=stored.pk)
        fields = services.ROTATION_FIELDS if is_rotation else services.OVERRIDE_FIELDS
        data = {name: form.cleaned_data.get(name) for name in fields if name in form.cleaned_data}
        if is_rotation:
            saved = services.rotation_save(
                user=request.user,
                schedule=schedule,
                data=data,
                members=form.cleaned_data.get("members"),
                rotation=stored,
            )
        else:
            saved = services.override_save(user=request.user, schedule=schedule, data=data, override=stored)
        form.instance = saved
        if stored is None:
            formset.new_objects.append(saved)
        else:
            formset.changed_objects.append((saved, form.changed_data))


# --- the schedule page -----------------------------------------------------------------------------


def schedule_days(schedule: Schedule, now: dt.datetime, days: int = PANEL_DAYS) -> list[dict[str, Any]]:
    """The next ``days`` days in the schedule's zone, each with who is on call when (local
    times; a shift going on past midnight shows up to 24:00, and again the next day)."""
    zone = zone_of(schedule)
    today = now.astimezone(zone).date()
    bounds = [local_moment(today + dt.timedelta(days=n), dt.time(0), zone) for n in range(days + 1)]
    found = shifts(schedule, bounds[0], bounds[-1])
    table = []
    for day_start, day_end in itertools.pairwise(bounds):
        entries = [
            {
                "from": max(shift.start, day_start).astimezone(zone).strftime("%H:%M"),
                "to": "24:00" if shift.end >= day_end else shift.end.astimezone(zone).strftime("%H:%M"),
                "user": shift.user,
                "override": shift.source == SOURCE_OVERRIDE,
                "rotation": shift.rotation,
                "now": max(shift.start, day_start) <= now < min(shift.end, day_end),
            }
            for shift in found
            if shift.start < day_end and shift.end > day_start
        ]
        # Formatted here: a template's date filter would show the site's zone, not the schedule's.
        table.append({"day": day_start.astimezone(zone).strftime("%a %d %b"), "entries": entries})
    return table


@admin.register(Schedule)
class ScheduleAdmin(ServiceErrorMessagesMixin, ReadOnlyHistoryAdmin):
    form = ScheduleForm
    inlines = (RotationInline, OverrideInline)
    list_display = ("name", "slug", "timezone", "team")
    list_select_related = ("team",)
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    change_form_template = "oncall/admin/schedule_change_form.html"

    def get_list_display(self, request: HttpRequest) -> tuple[Any, ...]:
        """With "on call now": every row's, read at once (four queries, not four per row)."""
        found = oncall_users(Schedule.objects.values_list("slug", flat=True), timezone.now())

        @admin.display(description="on call now")
        def on_call_now(obj: Schedule) -> str:
            people = found.get(obj.slug) or []
            if not people:
                return format_html('<span class="badge badge-none">{}</span>', "nobody")
            return ", ".join(user.get_full_name() or user.get_username() for user in people)

        return (*super().get_list_display(request), on_call_now)

    def save_model(self, request: HttpRequest, obj: Schedule, form: ScheduleForm, change: bool) -> None:
        data = {name: form.cleaned_data.get(name) for name in services.SCHEDULE_FIELDS}
        stored = Schedule.objects.get(pk=obj.pk) if change else None
        obj.pk = services.schedule_save(user=request.user, data=data, schedule=stored).pk

    def save_related(self, request: HttpRequest, form: ScheduleForm, formsets: Any, change: bool) -> None:
        schedule = Schedule.objects.get(pk=form.instance.pk)
        for formset in formsets:
            _formset_save(request, schedule, formset)

    def delete_model(self, request: HttpRequest, obj: Schedule) -> None:
        services.schedule_delete(user=request.user, schedule=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            services.schedule_delete(user=request.user, schedule=schedule)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        schedule = Schedule.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        extra_context = extra_context or {}
        if schedule is not None and self.has_view_permission(request, schedule):
            extra_context.update(self._panel_context(request, schedule))
        return super().change_view(request, object_id, form_url, extra_context)

    def _panel_context(self, request: HttpRequest, schedule: Schedule) -> dict[str, Any]:
        now = timezone.now()
        days = schedule_days(schedule, now)
        feeds = CalendarToken.objects.filter(revoked_at__isnull=True)
        return {
            "zone_name": schedule.timezone,
            "now_local": now.astimezone(zone_of(schedule)).strftime("%a %d %b %H:%M"),
            "oncall_now": [entry["user"] for entry in days[0]["entries"] if entry["now"]],
            "days": days,
            "can_manage_feeds": request.user.has_perm("oncall.change_schedule"),
            "schedule_feeds": feeds.filter(schedule=schedule).select_related("created_by"),
            "my_feeds": feeds.filter(user=request.user),
        }

    def get_urls(self) -> list:
        return [
            path(
                "<int:pk>/calendar-feed/",
                self.admin_site.admin_view(self.feed_create_view),
                name="oncall_schedule_feed_create",
            ),
            path(
                "<int:pk>/calendar-feed/<int:token_pk>/revoke/",
                self.admin_site.admin_view(self.feed_revoke_view),
                name="oncall_schedule_feed_revoke",
            ),
            *super().get_urls(),
        ]

    def feed_create_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Make a feed (the schedule's, or ``mine``: the person's own shifts) and show its URL, once."""
        schedule = get_object_or_404(Schedule, pk=pk)
        if request.method != "POST" or not self.has_view_permission(request, schedule):
            raise PermissionDenied
        mine = request.POST.get("feed") == "mine"
        try:
            token, raw = services.calendar_token_create(user=request.user, schedule=None if mine else schedule)
        except PermissionRefused as exc:
            raise PermissionDenied(exc.message) from exc
        url = request.build_absolute_uri(reverse("oncall:calendar-feed", args=[raw]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Calendar feed created",
            "opts": self.opts,
            "original": schedule,
            "token": token,
            "feed_url": url,
            "mine": mine,
            "back": reverse("admin:oncall_schedule_change", args=[schedule.pk]),
        }
        response = TemplateResponse(request, "oncall/admin/calendar_feed_created.html", context)
        response["Cache-Control"] = "no-store"  # the secret URL is shown once, and kept nowhere
        return response

    def feed_revoke_view(self, request: HttpRequest, pk: int, token_pk: int) -> HttpResponse:
        schedule = get_object_or_404(Schedule, pk=pk)
        token = CalendarToken.objects.filter(pk=token_pk).first()
        if request.method != "POST" or token is None:
            raise Http404
        try:
            services.calendar_token_revoke(user=request.user, token=token)
        except PermissionRefused as exc:
            raise PermissionDenied(exc.message) from exc
        messages.success(request, f"Calendar feed {token.prefix}… revoked: its URL answers 404 from now on.")
        return HttpResponseRedirect(reverse("admin:oncall_schedule_change", args=[schedule.pk]))


@admin.register(Override)
class OverrideAdmin(ServiceErrorMessagesMixin, ReadOnlyHistoryAdmin):
    """Every override, past ones too (the schedule's page shows the current and coming)."""

    form = OverrideForm
    fields = ("schedule", *services.OVERRIDE_FIELDS)
    list_display = ("schedule", "user", "start", "end", "covers", "reason", "created_by")
    list_filter = ("schedule",)
    list_select_related = ("schedule", "user", "covers", "created_by")
    search_fields = ("user__username", "covers__username", "reason")
    date_hierarchy = "start"

    def get_readonly_fields(self, request: HttpRequest, obj: Override | None = None) -> tuple[str, ...]:
        return ("schedule",) if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Override, form: OverrideForm, change: bool) -> None:
        data = {name: form.cleaned_data.get(name) for name in services.OVERRIDE_FIELDS}
        stored = Override.objects.get(pk=obj.pk) if change else None
        schedule = stored.schedule if stored else form.cleaned_data["schedule"]
        obj.pk = services.override_save(user=request.user, schedule=schedule, data=data, override=stored).pk

    def delete_model(self, request: HttpRequest, obj: Override) -> None:
        services.override_delete(user=request.user, override=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Override]) -> None:
        for override in queryset:
            services.override_delete(user=request.user, override=override)
