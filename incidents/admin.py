"""Detection rules (Admin), silences (Operator) and incidents (Operator) in the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from etl_monitor.admin_input import KeyCheckingAdminMixin, key_holds
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from incidents import detection, services, silences
from incidents.kinds import kinds_all
from incidents.models import DetectionRule, Incident, IncidentStatus, Silence

SEVERITY_COLOURS = {"CRITICAL": "#b71c1c", "HIGH": "#e65100", "MEDIUM": "#f9a825", "LOW": "#607d8b"}


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
        threshold = "" if obj.threshold is None else f" {obj.threshold:g}"
        return f"{obj.get_operator_display()}{threshold} over {obj.window_seconds} s"

    def save_model(self, request: HttpRequest, obj: DetectionRule, form: RuleForm, change: bool) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k in services.RULE_FIELDS}
        data["scope_loaders"] = list(data.get("scope_loaders") or [])
        rule = DetectionRule.objects.get(pk=obj.pk) if change else None
        obj.pk = services.rule_save(user=request.user, data=data, rule=rule).pk

    def save_related(self, request: HttpRequest, form: RuleForm, formsets: Any, change: bool) -> None:
        return None  # the service saved the scope loaders

    @admin.action(description="Evaluate now and show the decisions", permissions=["change"])
    def evaluate_now(self, request: HttpRequest, queryset: QuerySet[DetectionRule]) -> None:
        for rule in queryset:
            report = detection.rule_evaluate(rule=rule)
            summary = "; ".join(f"{d.subject}: {d.action}" for d in report.decisions) or "nothing measured"
            level = messages.ERROR if report.error else messages.INFO
            messages.add_message(request, level, f"{rule.name}: {report.error or summary}")


class SilenceForm(forms.ModelForm):
    class Meta:
        model = Silence
        fields = silences.SILENCE_FIELDS


@admin.register(Silence)
class SilenceAdmin(KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    form = SilenceForm
    list_display = (
        "__str__",
        "loader",
        "tag",
        "owner",
        "rule",
        "severity",
        "starts_at",
        "ends_at",
        "recurrence",
        "created_by",
    )
    list_filter = ("severity",)
    search_fields = ("comment", "loader__loader_code")
    autocomplete_fields = ("loader", "tag", "owner")

    def save_model(self, request: HttpRequest, obj: Silence, form: SilenceForm, change: bool) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k != "id"}
        silence = Silence.objects.get(pk=obj.pk) if change else None
        obj.pk = silences.silence_save(user=request.user, data=data, silence=silence).pk

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().changeform_view(request, object_id, *args, **kwargs)
        except ServiceError as exc:
            messages.error(request, str(exc) if isinstance(exc, InvalidInput) else exc.message)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "severity_badge",
        "status",
        "title",
        "loader",
        "rule",
        "occurrences",
        "last_seen",
        "suppressed",
        "flapping",
    )
    list_display_links = ("id", "title")
    list_filter = ("status", "severity", "category", "suppressed", "flapping", "rule")
    search_fields = ("title", "subject", "loader__loader_code", "correlation_id")
    list_select_related = ("loader", "rule")
    date_hierarchy = "last_seen"
    change_form_template = "admin/incidents/incident/change_form.html"
    actions = ("acknowledge", "resolve", "close")
    inlines: tuple[type[InlineModelAdmin], ...] = ()  # added by the apps above (incident_inline_register)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # incidents come from detection

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record stays; close it instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Incident._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # changes are the lifecycle buttons below, never free edits

    @admin.display(description="severity", ordering="severity")
    def severity_badge(self, obj: Incident) -> str:
        return format_html(
            '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px">{}</span>',
            SEVERITY_COLOURS.get(obj.severity, "#607d8b"),
            obj.severity,
        )

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
            *super().get_urls(),
        ]

    def do_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        incident = get_object_or_404(Incident, pk=pk)
        text = request.POST.get("comment", "").strip()
        run = {
            "acknowledge": lambda: services.incident_acknowledge(user=request.user, incident=incident, comment=text),
            "resolve": lambda: services.incident_resolve(user=request.user, incident=incident, comment=text),
            "close": lambda: services.incident_close(user=request.user, incident=incident, comment=text),
            "comment": lambda: services.incident_comment(user=request.user, incident=incident, text=text),
        }.get(action)
        if run is None:
            messages.error(request, f"Unknown action {action!r}.")
        else:
            try:
                run()
                messages.success(request, f"Incident #{pk}: {action} done.")
            except ServiceError as exc:
                messages.error(request, str(exc) if isinstance(exc, InvalidInput) else exc.message)
        return HttpResponseRedirect(reverse("admin:incidents_incident_change", args=[pk]))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        holds = key_holds(self.opts.pk, unquote(object_id))  # else Django's page says it does not exist
        incident = Incident.objects.filter(pk=unquote(object_id)).first() if holds else None
        extra_context = extra_context or {}
        if incident is not None:
            can_act = request.user.has_perm("incidents.change_incident")
            extra_context.update(
                timeline=incident.events.select_related("actor"),
                can_act=can_act,
                can_acknowledge=can_act and incident.status == IncidentStatus.OPEN,
                can_resolve=can_act and incident.status in (IncidentStatus.OPEN, IncidentStatus.ACKNOWLEDGED),
                can_close=can_act and incident.status != IncidentStatus.CLOSED,
                can_comment=request.user.has_perm("incidents.add_incidentevent"),
            )
        return super().change_view(request, object_id, form_url, extra_context)


def incident_inline_register(inline: type[InlineModelAdmin]) -> None:
    """Show ``inline`` on the incident page, after the ones registered before it.

    The apps above incidents (integrations: the deliveries sent about an incident) attach their
    rows this way, from their own admin module, so incidents imports none of them.
    """
    if inline not in IncidentAdmin.inlines:
        IncidentAdmin.inlines = (*IncidentAdmin.inlines, inline)
