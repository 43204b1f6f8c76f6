"""Silences in the admin (Operator): the list says which are active now and when each is on in
words; a one-off silence starts now for an hour by default; a recurring one is a weekly window
(weekdays, start time, duration, time zone) that ``silences.silence_recurring_save`` stores as an
RRULE. Every write goes through ``incidents.silences``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from etl_monitor.admin import ServiceErrorMessagesMixin
from etl_monitor.admin_input import KeyCheckingAdminMixin
from etl_monitor.errors import InvalidInput
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from incidents import silences
from incidents.models import DetectionRule, Silence
from loaders.models import Loader, Severity


class SilenceForm(forms.ModelForm):
    class Meta:
        model = Silence
        fields = silences.SILENCE_FIELDS


class ActiveNowFilter(admin.SimpleListFilter):
    """Which silences have a window open right now (recurrences evaluated in their time zone)."""

    title = "active now"
    parameter_name = "active_now"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Active now"), ("no", "Not active now")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Silence]) -> QuerySet[Silence]:
        if self.value() not in ("yes", "no"):
            return queryset
        active = [silence.pk for silence in silences.silences_active(timezone.now())]
        return queryset.filter(pk__in=active) if self.value() == "yes" else queryset.exclude(pk__in=active)


class RecurringSilenceForm(forms.Form):
    """A weekly maintenance window as people think of it; the service stores it as an RRULE."""

    weekdays = forms.MultipleChoiceField(
        choices=list(zip(silences.WEEKDAYS, silences.WEEKDAY_NAMES, strict=True)),
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )
    start_time = forms.TimeField(required=False, help_text="Wall-clock time in the time zone below (HH:MM).")
    duration_minutes = forms.IntegerField(required=False, initial=60, help_text="How long each window lasts.")
    timezone = forms.CharField(label="Time zone", initial="UTC", help_text="IANA name, e.g. Europe/Berlin.")
    starts_on = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="First day (default: today)."
    )
    until = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Last day a window may start (empty: no end).",
    )
    loader = forms.ModelChoiceField(
        Loader.objects.all(),
        required=False,
        to_field_name="loader_code",
        widget=forms.TextInput(attrs={"placeholder": "SALES-DAILY"}),
        help_text="A loader code; empty: every loader.",
    )
    rule = forms.ModelChoiceField(DetectionRule.objects.all(), required=False)
    severity = forms.ChoiceField(choices=[("", "any"), *Severity.choices], required=False)
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def save(self, user: Any) -> Silence | None:
        """Call the service; its errors land on the fields they name. None when nothing was saved."""
        data = self.cleaned_data
        matchers = {name: data.get(name) for name in ("loader", "rule") if data.get(name)}
        if data.get("severity"):
            matchers["severity"] = data["severity"]
        try:
            return silences.silence_recurring_save(
                user=user,
                weekdays=data.get("weekdays") or [],
                start_time=data.get("start_time"),
                duration_minutes=data.get("duration_minutes"),
                timezone_name=data.get("timezone") or "",
                matchers=matchers,
                comment=data.get("comment") or "",
                starts_on=data.get("starts_on"),
                until=data.get("until"),
            )
        except InvalidInput as exc:
            for name, problems in exc.errors.items():
                self.add_error(name if name in self.fields else None, "; ".join(problems))
            return None


@admin.register(Silence)
class SilenceAdmin(ServiceErrorMessagesMixin, KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    form = SilenceForm
    list_display = ("__str__", "active_now", "when", "matches", "created_by")
    list_filter = (ActiveNowFilter, "severity")
    search_fields = ("comment", "loader__loader_code")
    list_select_related = ("loader", "tag", "owner", "rule", "created_by")
    autocomplete_fields = ("loader", "tag", "owner")
    change_list_template = "admin/incidents/silence/change_list.html"

    @admin.display(description="active now")
    def active_now(self, obj: Silence) -> str:
        if silences.silence_is_active(obj, timezone.now()):
            return format_html('<span class="badge badge-ok">{}</span>', "Active now")
        return format_html('<span class="badge badge-none">{}</span>', "Not active")

    @admin.display(description="when", ordering="starts_at")
    def when(self, obj: Silence) -> str:
        return silences.silence_describe(obj)

    @admin.display(description="matches")
    def matches(self, obj: Silence) -> str:
        parts = [
            f"loader {obj.loader}" if obj.loader_id else "",
            f"tag {obj.tag}" if obj.tag_id else "",
            f"team {obj.owner}" if obj.owner_id else "",
            f"rule {obj.rule}" if obj.rule_id else "",
            f"severity {obj.get_severity_display()}" if obj.severity else "",
        ]
        return ", ".join(p for p in parts if p) or "everything"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """A new silence starts now and lasts an hour unless changed (the common case: a pause)."""
        now = timezone.now().replace(second=0, microsecond=0)
        given = super().get_changeform_initial_data(request)
        return {"starts_at": now, "ends_at": now + dt.timedelta(hours=1), **given}

    def get_urls(self) -> list:
        return [
            path(
                "recurring/",
                self.admin_site.admin_view(self.recurring_view),
                name="incidents_silence_recurring",
            ),
            *super().get_urls(),
        ]

    def recurring_view(self, request: HttpRequest) -> HttpResponse:
        """Add a weekly maintenance window: weekdays, start time, duration, time zone."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = RecurringSilenceForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            silence = form.save(request.user)
            if silence is not None:
                messages.success(request, f"Recurring silence saved: {silences.silence_describe(silence)}.")
                return HttpResponseRedirect(reverse("admin:incidents_silence_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Add a recurring silence",
            "opts": self.opts,
            "form": form,
        }
        status = 400 if request.method == "POST" else 200
        return TemplateResponse(request, "admin/incidents/silence/recurring.html", context, status=status)

    def save_model(self, request: HttpRequest, obj: Silence, form: SilenceForm, change: bool) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k != "id"}
        silence = Silence.objects.get(pk=obj.pk) if change else None
        obj.pk = silences.silence_save(user=request.user, data=data, silence=silence).pk
