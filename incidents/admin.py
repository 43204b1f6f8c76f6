"""Detection rules (Admin) and incidents (Operator) in the admin; silences are in ``silences_admin``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_GET, require_POST

from etl_monitor.admin_input import KeyCheckingAdminMixin, key_holds
from etl_monitor.errors import InvalidInput, PermissionRefused, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from incidents import detection, selectors, services, silences
from incidents.anomaly.band import BandUnavailable, anomaly_band, band_anchor
from incidents.anomaly.evidence import anomaly_evidence, evidence_window
from incidents.backtest import Backtest, WouldBeIncident
from incidents.backtest_jobs import (
    backtest_job_result,
    backtest_jobs_visible,
    rule_backtest_start,
    rule_draft_backtest_start,
)
from incidents.kinds import kinds_all
from incidents.models import ACTIVE_STATUSES, BacktestJob, DetectionRule, Incident, IncidentStatus
from incidents.selectors import contract_fields_hidden
from incidents.wording import duration_words, what_fired
from loaders.models import Loader


class RuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=())
    runbook_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = DetectionRule
        fields = services.RULE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(name, f"{name} — {kind.description}") for name, kind in kinds_all().items()]
        if self.instance.pk and self.instance.kind not in kinds_all():
            self.fields["kind"].choices.append((self.instance.kind, f"{self.instance.kind} (not available yet)"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        data = {k: v for k, v in cleaned.items() if k in services.RULE_FIELDS}
        data["scope_loaders"] = list(data.get("scope_loaders") or [])
        probe = DetectionRule.objects.get(pk=self.instance.pk) if self.instance.pk else None
        try:
            services.rule_check(data=data, rule=probe)
        except InvalidInput as exc:
            for name, messages_ in exc.errors.items():
                field = name.split(".")[0]
                self.add_error(field if field in self.fields else None, "; ".join(messages_))
        return cleaned


@admin.register(DetectionRule)
class DetectionRuleAdmin(KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    form = RuleForm
    list_display = ("name", "kind", "rule_type", "severity", "condition", "scope", "enabled", "last_evaluated_at")
    list_filter = ("enabled", "rule_type", "severity", "kind")
    search_fields = ("name", "kind")
    filter_horizontal = ("scope_loaders",)
    readonly_fields = ("last_evaluated_at", "next_due_at", "last_error")
    actions = ("evaluate_now",)

    @admin.display(description="condition")
    def condition(self, obj: DetectionRule) -> str:
        """ "> 5 over 15 min"; a kind that decides without a threshold reads "over 1 h"."""
        window = duration_words(obj.window_seconds)
        if obj.threshold is None:
            return f"over {window}"
        return f"{obj.get_operator_display()} {obj.threshold:g} over {window}"

    def save_model(self, request: HttpRequest, obj: DetectionRule, form: RuleForm, change: bool) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k in services.RULE_FIELDS}
        data["scope_loaders"] = list(data.get("scope_loaders") or [])
        rule = DetectionRule.objects.get(pk=obj.pk) if change else None
        obj.pk = services.rule_save(user=request.user, data=data, rule=rule).pk

    def save_related(self, request: HttpRequest, form: RuleForm, formsets: Any, change: bool) -> None:
        return None  # the service saved the scope loaders

    change_form_template = "admin/incidents/detectionrule/change_form.html"

    def get_urls(self) -> list:
        return [
            path(
                "<int:pk>/backtest/",
                self.admin_site.admin_view(self.backtest_view),
                name="incidents_detectionrule_backtest",
            ),
            path(
                "backtests/<uuid:job_id>/",
                self.admin_site.admin_view(self.backtest_job_view),
                name="incidents_detectionrule_backtest_job",
            ),
            *super().get_urls(),
        ]

    def backtest_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The rule's backtest page: reading the rule is enough (a backtest changes nothing)."""
        rule = get_object_or_404(DetectionRule, pk=pk)
        if not self.has_view_permission(request, rule):
            raise PermissionDenied
        days, result, problem = request.GET.get("days", "30"), None, ""
        if "days" in request.GET:
            try:
                result = rule_backtest_start(user=request.user, rule=rule, days=days)
            except InvalidInput as exc:
                problem = "; ".join(" ".join(messages_) for messages_ in exc.errors.values())
            if isinstance(result, BacktestJob):  # too big to wait for: its page shows it running, then the result
                return HttpResponseRedirect(reverse("admin:incidents_detectionrule_backtest_job", args=[result.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "rule": rule,
            "title": f"Backtest {rule.name}",
            "days": days,
            "problem": problem,
            **backtest_context(result),
        }
        return TemplateResponse(request, "admin/incidents/detectionrule/backtest.html", context)

    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "", extra_context: Any = None
    ) -> Any:
        if request.method == "POST" and "_backtest" in request.POST:
            return self._draft_backtest_view(request, object_id, form_url)
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _draft_backtest_view(self, request: HttpRequest, object_id: str | None, form_url: str) -> HttpResponse:
        """ "Backtest these settings": the form validated as for saving, the backtest run on its values,
        and the same form shown again with the result — nothing saved."""
        add = object_id is None
        obj = None
        if not add:
            if not key_holds(self.opts.pk, unquote(object_id)):
                raise Http404
            obj = self.get_object(request, unquote(object_id))
            if obj is None:
                raise Http404
        if not (self.has_add_permission(request) if add else self.has_change_permission(request, obj)):
            raise PermissionDenied
        fieldsets = self.get_fieldsets(request, obj)
        form_class = self.get_form(request, obj, change=not add, fields=flatten_fieldsets(fieldsets))
        form = form_class(request.POST, request.FILES, instance=obj)
        days = request.POST.get("_backtest_days", "30")
        result = None
        if form.is_valid():
            data = {k: v for k, v in form.cleaned_data.items() if k in services.RULE_FIELDS}
            data["scope_loaders"] = list(data.get("scope_loaders") or [])
            try:
                result = rule_draft_backtest_start(user=request.user, data=data, days=days, rule=obj)
            except InvalidInput as exc:
                for name, problems in exc.errors.items():
                    field = name.split(".")[0]
                    form.add_error(field if field in form.fields else None, "; ".join(problems))
            except PermissionRefused as exc:
                messages.error(request, exc.message)
            if isinstance(result, BacktestJob):
                return HttpResponseRedirect(reverse("admin:incidents_detectionrule_backtest_job", args=[result.pk]))
        admin_form = helpers.AdminForm(
            form, list(fieldsets), self.get_prepopulated_fields(request, obj), self.get_readonly_fields(request, obj),
            model_admin=self,
        )  # fmt: skip
        context = {
            **self.admin_site.each_context(request),
            "title": ("Add %s" if add else "Change %s") % self.opts.verbose_name,
            "subtitle": str(obj) if obj else None,
            "adminform": admin_form,
            "object_id": object_id,
            "original": obj,
            "is_popup": False,
            "to_field": None,
            "media": self.media + admin_form.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),
            "preserved_filters": self.get_preserved_filters(request),
            "backtest_days": days,
            "backtest_draft": True,
            **backtest_context(result),
        }
        return self.render_change_form(request, context, add=add, change=not add, obj=obj, form_url=form_url)

    def backtest_job_view(self, request: HttpRequest, job_id: Any) -> HttpResponse:
        """A backtest running on the worker: "Running…" (the page refreshes itself), then its result.
        Only its requester and Admins see it; anyone else gets a 404, as if it did not exist."""
        job = get_object_or_404(backtest_jobs_visible(user=request.user), pk=job_id)
        running = job.status in (BacktestJob.Status.QUEUED, BacktestJob.Status.RUNNING)
        since = job.started_at if job.status == BacktestJob.Status.RUNNING and job.started_at else job.created_at
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Backtest {job.rule_name}",
            "job": job,
            "running": running,
            "since": duration_words(round((timezone.now() - since).total_seconds())),
            "backtest_draft": job.draft is not None,
            **backtest_context(backtest_job_result(job)),
        }
        return TemplateResponse(request, "admin/incidents/detectionrule/backtest_job.html", context)

    @admin.action(description="Evaluate now and show the decisions", permissions=["change"])
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[DetectionRule]) -> None:
        for rule in queryset:
            report = detection.rule_evaluate(rule=rule)
            summary = "; ".join(f"{d.subject}: {d.action}" for d in report.decisions) or "nothing measured"
            level = messages.ERROR if report.error else messages.INFO
            messages.add_message(request, level, f"{rule.name}: {report.error or summary}")


def backtest_context(result: Backtest | None) -> dict[str, Any]:
    """What the backtest templates show of a result: each would-be incident with its loader's page."""
    if result is None:
        return {"backtest": None}
    codes = dict(
        Loader.objects.filter(pk__in={i.loader_id for i in result.incidents if i.loader_id}).values_list(
            "pk", "loader_code"
        )
    )
    rows = [
        {
            "incident": incident,
            "loader_url": reverse("operations:loader", args=[codes[incident.loader_id]])
            if incident.loader_id in codes
            else "",
            "duration": duration_words(incident.duration_seconds)
            if incident.end
            else f"{duration_words((result.end - incident.start).total_seconds())} so far",
            "peak": _peak_words(incident),
        }
        for incident in result.incidents
    ]
    per_subject = sorted(result.per_subject.items(), key=lambda item: (-item[1], item[0]))
    return {
        "backtest": result,
        "backtest_rows": rows,
        "backtest_per_subject": per_subject,
        "backtest_step": duration_words(result.step_seconds),
        "backtest_took": duration_words(result.elapsed_seconds),
    }


def _peak_words(incident: WouldBeIncident) -> str:
    if incident.peak is None:
        return "—"
    value = f"{incident.peak:,.2f}".rstrip("0").rstrip(".")
    return f"{value} (score {incident.peak_score:.2f})" if incident.peak_score is not None else value


class IncidentStatusFilter(admin.SimpleListFilter):
    """Status, defaulting to the incidents someone still has to act on (open and acknowledged)."""

    title = "status"
    parameter_name = "status"
    DEFAULT = "active"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(self.DEFAULT, "Open and acknowledged"), *IncidentStatus.choices, ("all", "All")]

    def chosen(self) -> str:
        value = self.value()
        return value if value in {self.DEFAULT, "all", *IncidentStatus.values} else self.DEFAULT

    def queryset(self, request: HttpRequest, queryset: QuerySet[Incident]) -> QuerySet[Incident]:
        chosen = self.chosen()
        if chosen == "all":
            return queryset
        if chosen == self.DEFAULT:
            return queryset.filter(status__in=ACTIVE_STATUSES)
        return queryset.filter(status=chosen)

    def choices(self, changelist: Any) -> Any:
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.chosen() == lookup,
                "query_string": changelist.get_query_string(
                    {self.parameter_name: lookup} if lookup != self.DEFAULT else {}, [self.parameter_name]
                ),
                "display": title,
            }


def _badge(kind: str, word: str) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', kind.lower(), word)


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    """The incident list (open ones first) and the on-call page: what fired, the error, the chart,
    the timeline and the actions the reader's role and the incident's state allow."""

    list_display = ("id", "severity_badge", "status_badge", "title_cell", "loader", "age")
    list_display_links = ("id", "title_cell")
    list_filter = (IncidentStatusFilter, "severity", "category", "suppressed", "flapping", "rule")
    search_fields = ("title", "subject", "loader__loader_code", "correlation_id")
    list_select_related = ("loader", "rule")
    change_form_template = "admin/incidents/incident/change_form.html"
    change_list_template = "admin/incidents/incident/change_list.html"
    actions = ("acknowledge", "resolve", "close")
    inlines: tuple[type[InlineModelAdmin], ...] = ()  # added by the apps above (incident_inline_register)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # incidents come from detection

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record stays; close it instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Incident._meta.fields]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return []  # the page shows the incident itself (change_form.html); the form only carries the inlines

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # changes are the lifecycle buttons, never free edits

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Incident) -> str:
        return _badge(obj.severity, obj.get_severity_display())

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Incident) -> str:
        return _badge(obj.status, obj.get_status_display())

    @admin.display(description="title", ordering="title")
    def title_cell(self, obj: Incident) -> str:
        flags = [("closed", "silenced")] if obj.suppressed else []
        flags += [("medium", "flapping")] if obj.flapping else []
        now = timezone.now()
        # On a phone the loader and age columns give way; the line under the title then says them.
        phone_only = format_html(
            '<span class="incident-list-phone">{} · {} old · </span>',
            obj.loader.loader_code if obj.loader else obj.subject,
            duration_words((now - obj.first_seen).total_seconds()),
        )
        return format_html(
            '<span class="incident-list-title">{}</span>{}'
            '<br><span class="muted">{}fired {} time{}, last {} ago</span>',
            obj.title,
            format_html_join("", ' <span class="badge badge-{}">{}</span>', flags),
            phone_only,
            obj.occurrences,
            "" if obj.occurrences == 1 else "s",
            duration_words((now - obj.last_seen).total_seconds()),
        )

    @admin.display(description="age", ordering="first_seen")
    def age(self, obj: Incident) -> str:
        return duration_words((timezone.now() - obj.first_seen).total_seconds())

    def _bulk(self, request: HttpRequest, queryset: QuerySet[Incident], run: Any, done: str) -> None:
        count = 0
        for incident in queryset:
            try:
                run(incident)
                count += 1
            except ServiceError as exc:
                messages.warning(request, f"#{incident.pk}: {exc.message}")
        if count:
            messages.success(request, f"{count} incident(s) {done}.")

    @admin.action(description="Acknowledge selected incidents", permissions=["view"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk(
            request, queryset, lambda i: services.incident_acknowledge(user=request.user, incident=i), "acknowledged"
        )

    @admin.action(description="Resolve selected incidents", permissions=["view"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk(request, queryset, lambda i: services.incident_resolve(user=request.user, incident=i), "resolved")

    @admin.action(description="Close selected incidents", permissions=["view"])
    def close(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        self._bulk(request, queryset, lambda i: services.incident_close(user=request.user, incident=i), "closed")

    def get_urls(self) -> list:
        return [
            path(
                "<int:pk>/do/<str:action>/",
                self.admin_site.admin_view(require_POST(self.do_view)),
                name="incidents_incident_do",
            ),
            path(
                "<int:pk>/silence/",
                self.admin_site.admin_view(require_POST(self.silence_view)),
                name="incidents_incident_silence",
            ),
            path(
                "<int:pk>/series/",
                self.admin_site.admin_view(require_GET(self.series_view)),
                name="incidents_incident_series",
            ),
            path(
                "<int:pk>/band/",
                self.admin_site.admin_view(require_GET(self.band_view)),
                name="incidents_incident_band",
            ),
            *super().get_urls(),
        ]

    def _back(self, pk: int) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[pk]))

    def do_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        incident = get_object_or_404(Incident, pk=pk)
        text = request.POST.get("comment", "").strip()
        own = {
            "acknowledge": lambda: services.incident_acknowledge(user=request.user, incident=incident, comment=text),
            "resolve": lambda: services.incident_resolve(user=request.user, incident=incident, comment=text),
            "close": lambda: services.incident_close(user=request.user, incident=incident, comment=text),
            "comment": lambda: services.incident_comment(user=request.user, incident=incident, text=text),
        }.get(action)
        done = {"acknowledge": "acknowledged", "resolve": "resolved", "close": "closed", "comment": "comment added"}
        extra = INCIDENT_PAGE_ACTIONS.get(action)
        if own is None and extra is None:
            messages.error(request, f"Unknown action {action!r}.")
            return self._back(pk)
        try:
            with transaction.atomic():
                if own is not None:
                    own()
                    said = f"Incident #{pk}: {done[action]}."
                else:
                    if text:  # typed in the shared comment box: kept on the timeline, not dropped
                        services.incident_comment(user=request.user, incident=incident, text=text)
                    said = extra.run(request.user, incident)
            messages.success(request, said)
        except ServiceError as exc:
            messages.error(request, str(exc) if isinstance(exc, InvalidInput) else exc.message)
        return self._back(pk)

    def silence_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Silence this loader or rule for ``hours`` (the 1 h / 4 h buttons) or ``until`` a local time."""
        incident = get_object_or_404(Incident.objects.select_related("loader", "rule"), pk=pk)
        try:
            hours, until = silence_until_parse(request.POST)
            silence = silences.silence_for_incident(
                user=request.user,
                incident=incident,
                scope=request.POST.get("scope", ""),
                hours=hours,
                until=until,
                comment=request.POST.get("comment", ""),
            )
        except ServiceError as exc:
            messages.error(request, str(exc) if isinstance(exc, InvalidInput) else exc.message)
        else:
            messages.success(request, f"Silenced until {timezone.localtime(silence.ends_at):%Y-%m-%d %H:%M %Z}.")
        return self._back(pk)

    def series_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """The chart's data as JSON (Viewer and above: anyone who may read the incident)."""
        if not self.has_view_permission(request):
            return JsonResponse({"detail": "Your role does not allow you to read incidents."}, status=403)
        incident = get_object_or_404(Incident.objects.select_related("rule"), pk=pk)
        hours = request.GET.get("hours", "6")
        if not hours.isdigit() or not 1 <= int(hours) <= 72:
            return JsonResponse({"hours": ["A whole number of hours from 1 to 72."]}, status=400)
        hidden = contract_fields_hidden(request.user)
        return JsonResponse(selectors.incident_series(incident, hidden=hidden, hours=int(hours)))

    def band_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """An anomaly incident's series with its expected band as JSON, from a week before it began to
        a little after it ended (Viewer and above, as the page)."""
        if not self.has_view_permission(request):
            return JsonResponse({"detail": "Your role does not allow you to read incidents."}, status=403)
        incident = get_object_or_404(Incident.objects.select_related("rule", "loader"), pk=pk)
        if incident.rule is None or incident.loader is None:
            return JsonResponse({"detail": "This incident has no rule or loader to draw a band of."}, status=404)
        since, until = evidence_window(incident.first_seen, incident.resolved_at or incident.closed_at, timezone.now())
        try:
            band = anomaly_band(incident.rule, incident.subject, since=since, until=until, loader=incident.loader)
        except BandUnavailable as exc:
            return JsonResponse({"detail": f"No expected band: {exc}."}, status=404)
        return JsonResponse({**band.as_json(), "opened_at": incident.first_seen.timestamp()})

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        holds = key_holds(self.opts.pk, unquote(object_id))  # else Django's page says it does not exist
        incident = (
            Incident.objects.select_related("loader", "rule", "acknowledged_by", "resolved_by")
            .filter(pk=unquote(object_id))
            .first()
            if holds
            else None
        )
        extra_context = extra_context or {}
        if incident is not None and self.has_view_permission(request, incident):
            extra_context.update(self._page_context(request, incident))
        return super().change_view(request, object_id, form_url, extra_context)

    def _page_context(self, request: HttpRequest, incident: Incident) -> dict[str, Any]:
        user = request.user
        now = timezone.now()
        hidden = contract_fields_hidden(user)
        runs = selectors.incident_triggering_runs(incident)
        rule = incident.rule
        allowed = services.incident_allowed_actions(user=user, incident=incident)
        scopes = [("loader", f"this loader ({incident.loader.loader_code})")] if incident.loader else []
        scopes += [("rule", f"this rule ({rule.name})")] if rule else []
        metrics = selectors.incident_metrics_visible(incident, hidden)
        description = incident.description.strip()
        return {
            "title": incident.title,
            "subtitle": None,
            "incident": incident,
            "age": duration_words((now - incident.first_seen).total_seconds()),
            "last_seen_ago": duration_words((now - incident.last_seen).total_seconds()),
            "what_fired": what_fired(
                rule.kind if rule else None,
                incident.metrics,
                params=rule.params if rule else None,
                window_seconds=rule.window_seconds if rule else None,
                hidden=hidden,
            ),
            "description": "" if description in ("", incident.title.strip()) else description,
            "error_text": selectors.incident_error_text(incident, runs),
            "runs": runs,
            "signals": selectors.incident_triggering_signals(incident),
            "signals_url": (
                f"{reverse('admin:signals_app_signal_changelist')}?{urlencode({'q': incident.loader.loader_code})}"
                if incident.loader
                else ""
            ),
            "timeline": incident.events.select_related("actor").order_by("-at", "-id"),
            "metrics_json": json.dumps(metrics, indent=2, sort_keys=True, default=str),
            "series_url": reverse("admin:incidents_incident_series", args=[incident.pk]),
            "can_acknowledge": "acknowledge" in allowed,
            "can_resolve": "resolve" in allowed,
            "can_close": "close" in allowed,
            "page_actions": [extra for extra in INCIDENT_PAGE_ACTIONS.values() if extra.allowed(user, incident)],
            "can_comment": "comment" in allowed,
            "can_silence": user.has_perm("incidents.add_silence")
            and bool(scopes)
            and incident.status != IncidentStatus.CLOSED,
            "silence_scopes": scopes,
            "silence_until_default": timezone.localtime(now + dt.timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M"),
            "time_zone": timezone.get_current_timezone_name(),
            **self._evidence_context(request, incident, hidden),
        }

    def _evidence_context(self, request: HttpRequest, incident: Incident, hidden: set[str]) -> dict[str, Any]:
        """An anomaly incident's Evidence panel: its lines, its chart's data and its links."""
        evidence = anomaly_evidence(incident.metrics, hidden=hidden)
        if evidence is None:
            return {}
        context: dict[str, Any] = {"evidence": evidence}
        if incident.rule_id and incident.loader_id:
            context["band_url"] = reverse("admin:incidents_incident_band", args=[incident.pk])
            context["series_chart_url"] = (
                reverse("operations:loader", args=[incident.loader.loader_code])
                + "#"
                + band_anchor(incident.rule_id, incident.subject)
            )
        version = evidence.version
        if version and version.get("version_id") and request.user.has_perm("loaders.view_loaderversion"):
            context["version_url"] = (
                reverse("admin:loaders_loaderversion_change", args=[version["version_id"]]) + "#changes"
            )
        return context


def silence_until_parse(form: Any) -> tuple[float | None, dt.datetime | None]:
    """``hours`` (a number) or ``until`` (a local date and time, as a datetime-local input sends it)
    from a posted form; InvalidInput names the field that does not parse."""
    hours, until = form.get("hours", "").strip(), form.get("until", "").strip()
    if hours:
        try:
            return float(hours), None
        except ValueError:
            raise InvalidInput({"hours": ["Must be a number of hours."]}) from None
    if until:
        parsed = parse_datetime(until.replace(" ", "T"))
        if parsed is None:
            raise InvalidInput({"until": ["Must be a date and time, e.g. 2026-12-03 22:00."]})
        return None, parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    return None, None


@dataclass(frozen=True)
class IncidentPageAction:
    """A button of the incident page's action bar that an app above incidents provides
    (integrations: Escalate now). ``allowed(user, incident)`` says whether it is shown;
    ``run(user, incident)`` does it through that app's service and returns what to tell the person
    (a ServiceError it raises is shown as the other buttons' refusals are)."""

    name: str
    label: str
    title: str
    allowed: Callable[[Any, Incident], bool]
    run: Callable[[Any, Incident], str]


INCIDENT_PAGE_ACTIONS: dict[str, IncidentPageAction] = {}


def incident_page_action_register(action: IncidentPageAction) -> None:
    """Add ``action`` to the incident page (after Resolve), so incidents imports no app above it."""
    INCIDENT_PAGE_ACTIONS[action.name] = action


def incident_inline_register(inline: type[InlineModelAdmin]) -> None:
    """Show ``inline`` on the incident page, after the ones registered before it.

    The apps above incidents (integrations: the deliveries sent about an incident) attach their
    rows this way, from their own admin module, so incidents imports none of them.
    """
    if inline not in IncidentAdmin.inlines:
        IncidentAdmin.inlines = (*IncidentAdmin.inlines, inline)


# Silences have their own module (their list, the recurring form); importing it registers them.
from incidents import silences_admin  # noqa: E402, F401
