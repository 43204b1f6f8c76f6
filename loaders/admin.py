"""The loader registry in the Django admin, the main UI for business users.

Every write goes through ``loaders.services`` (so four-eyes and validation are
the same as in the API); the admin only decides which buttons to show, using
``loader_version_allowed_actions`` — the same checks the services enforce.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from contextvars import ContextVar
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import capfirst
from django.views.decorators.http import require_POST
from simple_history.models import DeletedObject
from simple_history.template_utils import HistoricalRecordContextHelper

from etl_monitor.admin import ServiceErrorMessagesMixin
from etl_monitor.admin_input import KeyCheckingAdminMixin, ViewOnlyAdmin, key_holds
from etl_monitor.downloads import file_response
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from etl_monitor.humanize import cron_words, local_time
from etl_monitor.protection import MASK, FieldPolicy, policy_for
from loaders import exporting, importing, selectors, services
from loaders.models import ExportJob, ImportJob, Loader, LoaderVersion, PendingApproval, Tag, Team, VersionState
from loaders.spreadsheets import SpreadsheetError

STATE_COLOURS = {
    VersionState.DRAFT: "#6c757d",
    VersionState.PENDING_APPROVAL: "#b8860b",
    VersionState.ACTIVE: "#2e7d32",
    VersionState.SUPERSEDED: "#9e9e9e",
    VersionState.REJECTED: "#c62828",
}


def state_badge(state: str) -> str:
    label = VersionState(state).label
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:3px;white-space:nowrap">{}</span>',
        STATE_COLOURS[VersionState(state)],
        label,
    )


def _username(user: Any) -> str:
    return user.get_username() if user is not None else "a deleted user"


def _local_time_column(field: str) -> Any:
    """A read-only admin column showing ``field`` in local time with its zone."""

    @admin.display(description=field.replace("_", " "), ordering=field)
    def column(model_admin: Any, obj: Any) -> str:
        return local_time(getattr(obj, field))

    return column


def version_url(version: LoaderVersion) -> str:
    return reverse("admin:loaders_loaderversion_change", args=[version.pk])


class ProtectedHistoryContextHelper(HistoricalRecordContextHelper):
    """Formats history diffs under the viewer's field policy: HIDDEN fields are
    left out, MASKED ones (secrets included) say only that they changed."""

    policy: FieldPolicy

    def context_for_delta_changes(self, delta: Any) -> list[dict[str, Any]]:
        changes = [c for c in delta.changes if c.field not in self.policy.hidden]
        return super().context_for_delta_changes(dataclasses.replace(delta, changes=changes))

    def prepare_delta_change_value(self, change: Any, value: Any) -> Any:
        """Values as people read them: a time in the site's zone, "(none)" for no person
        (simple-history says "Deleted user (pk=None)"), "(not set)" for an empty value."""
        field = self.model._meta.get_field(change.field)
        if field.is_relation and not field.many_to_many:
            if value is None or getattr(value, "pk", None) is None:
                return "(none)"
            if isinstance(value, DeletedObject):
                return "a deleted user" if field.related_model is get_user_model() else f"(deleted, id {value.pk})"
            return value.get_username() if hasattr(value, "get_username") else str(value)
        if value is None or value == "":
            return "(not set)"
        if isinstance(value, dt.datetime):
            return local_time(value)
        if field.choices:
            return dict(field.flatchoices).get(value, value)
        return super().prepare_delta_change_value(change, value)

    def format_delta_change(self, change: Any) -> Any:
        if change.field not in self.policy.masked:
            return super().format_delta_change(change)
        return dataclasses.replace(
            change,
            field=capfirst(self.model._meta.get_field(change.field).verbose_name),
            old=MASK if change.old not in (None, "") else "(not set)",
            new=f"{MASK} (changed)" if change.new not in (None, "") else "(cleared)",
        )


_admin_user: ContextVar[Any] = ContextVar("admin_user")


def _loader_field_protected(request: HttpRequest, field: str) -> bool:
    """Whether a Loader field is HIDDEN or MASKED for this user (then neither shown, filtered nor searched)."""
    policy = policy_for(request.user, Loader)
    return field in policy.hidden or field in policy.masked


class ProtectedFieldsAdminMixin:
    """Admin pages under field protection: ``masked__<field>`` names display a
    field the way the current user may see it (usable in fieldsets and lists)."""

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("masked__"):
            raise AttributeError(name)
        field_name = name[len("masked__") :]
        model = self.model

        def display(obj: Any) -> Any:
            value = getattr(obj, field_name)
            if hasattr(value, "all"):  # many-to-many
                value = ", ".join(str(v) for v in value.all())
            # No user known (should not happen) means the strictest policy, not none.
            return policy_for(_admin_user.get(None), model).display(field_name, value)

        display.short_description = model._meta.get_field(field_name).verbose_name
        return display

    def _policy(self, request: HttpRequest) -> FieldPolicy:
        # ModelAdmin instances are shared between threads; the user travels in a context variable.
        _admin_user.set(request.user)
        return policy_for(request.user, self.model)

    object_history_list_template = "admin/loaders/history_list.html"

    def get_historical_record_context_helper(self, request: HttpRequest, historical_record: Any) -> Any:
        helper = ProtectedHistoryContextHelper(self.model, historical_record)
        helper.policy = self._policy(request)
        return helper

    def set_history_delta_changes(self, request: HttpRequest, page_obj: Any, *args: Any, **kwargs: Any) -> None:
        super().set_history_delta_changes(request, page_obj, *args, **kwargs)
        for record in page_obj.object_list:
            record.history_sentence = history_sentence(record, self.model)


_HISTORY_VERBS = {"+": "Created", "~": "Changed", "-": "Deleted"}
_FIELD_NAME = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def history_sentence(record: Any, model: type[Any]) -> str:
    """One history entry as a sentence: "Submitted for approval by alice at 3 Dec 2026, 14:02
    CET: “Month end is slower”". Field names in the reason read as their labels."""
    reason = record.history_change_reason or _HISTORY_VERBS.get(record.history_type, "Changed")
    head, colon, said = reason.partition(": ")

    def label(match: re.Match[str]) -> str:
        try:
            return str(model._meta.get_field(match.group(0)).verbose_name)
        except FieldDoesNotExist:
            return match.group(0)

    head = _FIELD_NAME.sub(label, head)
    # Every write names its author (system accounts included): no author means one deleted since.
    who = _username(record.history_user)
    sentence = f"{head} by {who} at {local_time(record.history_date)}"
    return f"{sentence}: “{said}”" if colon and said else f"{sentence}."


# --- teams and tags ----------------------------------------------------------------


@admin.register(Team)
class TeamAdmin(ReadOnlyHistoryAdmin):
    list_display = ("name", "slug", "email", "loader_count")
    search_fields = ("name", "slug", "email")
    prepopulated_fields = {"slug": ("name",)}
    ordering = ("name",)  # Meta.ordering is dropped by the loader count's GROUP BY (autocomplete pages)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(loader_count=Count("loaders"))

    @admin.display(description="loaders", ordering="loader_count")
    def loader_count(self, obj: Team) -> int:
        return obj.loader_count


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name",)
    search_fields = ("name",)


# --- loaders -----------------------------------------------------------------------


class PendingFilter(admin.SimpleListFilter):
    title = "approval"
    parameter_name = "approval"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "Pending approval"), ("none", "Nothing pending")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "pending":
            return queryset.filter(has_pending=True)
        if self.value() == "none":
            return queryset.filter(has_pending=False)
        return queryset


class ActiveFilter(admin.SimpleListFilter):
    title = "monitoring"
    parameter_name = "monitoring"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Has an active version"), ("onboarding", "No active version yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "active":
            return queryset.filter(has_active=True)
        if self.value() == "onboarding":
            return queryset.filter(has_active=False)
        return queryset


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="An .xlsx or .csv file with one loader per row (see the template).")
    submit = forms.BooleanField(
        required=False,
        label="Submit the resulting drafts for approval",
        help_text="Approval still needs another person: you cannot approve what you imported.",
    )


class LoaderForm(forms.ModelForm):
    class Meta:
        model = Loader
        fields = ("loader_code", "name", "owner", "tags", "is_paused")


@admin.register(Loader)
class LoaderAdmin(ServiceErrorMessagesMixin, ProtectedFieldsAdminMixin, KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    form = LoaderForm
    list_display = ("loader_code", "name", "owner", "tag_list", "active_display", "pending_display", "paused_display")
    list_filter = (PendingFilter, ActiveFilter, "is_paused", "owner", "tags")
    search_fields = ("loader_code",)  # the real search is selectors.loader_search
    search_help_text = "Code, name or owner contains the text, or a tag is exactly the text."
    list_per_page = 50
    autocomplete_fields = ("owner", "tags")
    change_form_template = "admin/loaders/loader/change_form.html"
    history_list_display = ("loader_code",)
    protected_columns = {"name": "name", "owner": "owner", "tag_list": "tags", "paused_display": "is_paused"}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Loader]:
        return selectors.loader_list()

    def get_list_display(self, request: HttpRequest) -> list[str]:
        policy = self._policy(request)
        columns = []
        for column in self.list_display:
            field = self.protected_columns.get(column)
            if field in policy.hidden:
                continue
            columns.append("masked__" + field if field in policy.masked else column)
        return columns

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        policy = self._policy(request)
        hidden = policy.hidden | policy.masked
        return [f for f in self.list_filter if not (isinstance(f, str) and f in hidden)]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        policy = self._policy(request)
        protected = policy.hidden | policy.masked
        return selectors.loader_search(queryset, search_term.strip(), exclude=protected), False

    def get_readonly_fields(self, request: HttpRequest, obj: Loader | None = None) -> tuple[str, ...]:
        fields: tuple[str, ...] = ("first_activated_at", "created_by", "created_at")
        if obj is not None and obj.code_locked:
            fields = ("loader_code", *fields)
        if obj is not None:
            policy = self._policy(request)
            fields = (*fields, *sorted(policy.locked), *("masked__" + f for f in sorted(policy.masked)))
        return fields

    def get_fields(self, request: HttpRequest, obj: Loader | None = None) -> list[str]:
        policy = self._policy(request)
        fields = []
        for name in ("loader_code", "name", "owner", "tags", "is_paused"):
            if name in policy.hidden and (obj is not None or name in ("tags", "is_paused")):
                continue
            fields.append("masked__" + name if obj is not None and name in policy.masked else name)
        return fields if obj is None else [*fields, "first_activated_at", "created_by", "created_at"]

    @admin.display(description="tags")
    def tag_list(self, obj: Loader) -> str:
        return ", ".join(tag.name for tag in obj.tags.all())

    @admin.display(description="active version", ordering="has_active")
    def active_display(self, obj: Loader) -> str:
        active = obj.active_version
        if active is None:
            return format_html('<span style="color:#b8860b">{}</span>', "none yet")
        return format_html('<a href="{}">v{}</a>', version_url(active), active.number)

    @admin.display(description="pending approval", ordering="has_pending")
    def pending_display(self, obj: Loader) -> str:
        open_version = obj.open_version
        if open_version is None:
            return "—"
        if open_version.state == VersionState.PENDING_APPROVAL:
            return format_html(
                '<a href="{}">v{} {}</a>',
                version_url(open_version),
                open_version.number,
                state_badge(open_version.state),
            )
        return format_html('<a href="{}">draft v{}</a>', version_url(open_version), open_version.number)

    @admin.display(description="paused", ordering="is_paused")
    def paused_display(self, obj: Loader) -> str:
        return "paused" if obj.is_paused else ""

    def save_model(self, request: HttpRequest, obj: Loader, form: forms.ModelForm, change: bool) -> None:
        data = {k: v for k, v in form.cleaned_data.items() if k in services.LOADER_FIELDS}
        data["tags"] = list(data.get("tags") or [])
        if change:
            changed = {k: v for k, v in data.items() if k in form.changed_data}
            services.loader_update(user=request.user, loader=obj, data=changed)
        else:
            created = services.loader_create(user=request.user, data=data)
            obj.pk = created.pk

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        # Tags were saved by the service; versions are read-only here.
        return None

    def response_add(self, request: HttpRequest, obj: Loader, post_url_continue: str | None = None) -> HttpResponse:
        draft = Loader.objects.get(pk=obj.pk).open_version
        messages.success(
            request,
            f"Loader {obj.loader_code} created with draft v1. "
            "Fill in its monitoring contract and submit it for approval.",
        )
        return HttpResponseRedirect(version_url(draft))

    actions = ("export_xlsx", "export_csv")
    change_list_template = "admin/loaders/loader/change_list.html"

    @admin.action(description="Export selected loaders (xlsx)", permissions=["view"])
    def export_xlsx(self, request: HttpRequest, queryset: QuerySet[Loader]) -> HttpResponse:
        return self._export(request, queryset, "xlsx")

    @admin.action(description="Export selected loaders (csv)", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Loader]) -> HttpResponse:
        return self._export(request, queryset, "csv")

    def _export(self, request: HttpRequest, queryset: QuerySet[Loader], file_format: str) -> HttpResponse:
        """A few loaders come back as the file at once; more become a job whose page shows its progress."""
        try:
            if queryset.count() <= settings.LOADER_EXPORT_SYNC_ROWS:
                content = exporting.loaders_export_now(user=request.user, loaders=queryset, file_format=file_format)
                return file_response(content, file_format, "loaders")
            job = exporting.export_job_create(user=request.user, loaders=queryset, file_format=file_format)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:loaders_loader_changelist"))
        return HttpResponseRedirect(reverse("admin:loaders_loader_export_job", args=[job.pk]))

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """Export every loader the list shows with its current filter and search (the query string)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            messages.error(request, "The list's filter is not valid; choose it again on the list.")
            return HttpResponseRedirect(reverse("admin:loaders_loader_changelist"))
        file_format = request.POST.get("format")
        if request.method == "POST" and file_format in ExportJob.Format.values:
            return self._export(request, changelist.queryset, file_format)
        count = changelist.queryset.count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Export loaders",
            "count": count,
            "filters": _filters_applied(changelist),
            "search": changelist.query,
            "list_url": reverse("admin:loaders_loader_changelist") + changelist.get_query_string(),
            "in_background": count > settings.LOADER_EXPORT_SYNC_ROWS,
            "formats": ExportJob.Format.choices,
        }
        return TemplateResponse(request, "admin/loaders/loader/export.html", context)

    def export_job_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        job = get_object_or_404(exporting.export_jobs_visible(user=request.user), pk=job_id)
        done, total = exporting.export_job_progress(job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Export of {total} loaders",
            "job": job,
            "running": job.status in (ExportJob.Status.QUEUED, ExportJob.Status.RUNNING),
            "done": done,
            "total": total,
            "percent": int(100 * done / total) if total else 0,
            "downloadable": job.status == ExportJob.Status.DONE and bool(job.content),
            "keep_hours": settings.LOADER_EXPORT_KEEP_HOURS,
        }
        return TemplateResponse(request, "admin/loaders/loader/export_job.html", context)

    def export_download_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        job = get_object_or_404(exporting.export_jobs_visible(user=request.user), pk=job_id)
        if job.status != ExportJob.Status.DONE or not job.content:
            messages.error(request, "This export has no file to download (not finished, failed, or expired).")
            return HttpResponseRedirect(reverse("admin:loaders_loader_export_job", args=[job.pk]))
        return file_response(bytes(job.content), job.file_format, "loaders")

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm("loaders.add_loader"):
            raise PermissionDenied
        form = ImportUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = importing.import_job_create(
                    user=request.user,
                    content=upload.read(),
                    filename=upload.name,
                    dry_run=True,
                    submit=form.cleaned_data["submit"],
                )
            except SpreadsheetError as exc:
                form.add_error("file", exc.message)
            except ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                return HttpResponseRedirect(reverse("admin:loaders_loader_import_job", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import loaders from a spreadsheet",
            "form": form,
            "max_mb": settings.LOADER_IMPORT_MAX_BYTES // (1024 * 1024),
            "max_rows": settings.LOADER_IMPORT_MAX_ROWS,
        }
        return TemplateResponse(request, "admin/loaders/loader/import.html", context)

    def import_job_view(self, request: HttpRequest, job_id: str) -> HttpResponse:
        job = get_object_or_404(ImportJob, pk=job_id, created_by=request.user)
        if request.method == "POST":
            try:
                confirmed = importing.import_job_confirm(user=request.user, preview=job)
            except ServiceError as exc:
                messages.error(request, exc.message)
                return HttpResponseRedirect(request.path)
            return HttpResponseRedirect(reverse("admin:loaders_loader_import_job", args=[confirmed.pk]))
        done, total = importing.import_job_progress(job)
        report = job.report or {}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{'Preview' if job.dry_run else 'Import'} of {job.filename}",
            "job": job,
            "report": report,
            "running": job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING),
            "done": done,
            "total": total,
            "percent": int(100 * done / total) if total else 0,
            "can_confirm": job.dry_run
            and job.status == ImportJob.Status.DONE
            and report.get("ok")
            and bool(job.content),
        }
        return TemplateResponse(request, "admin/loaders/loader/import_job.html", context)

    def import_template_view(self, request: HttpRequest) -> HttpResponse:
        return file_response(importing.loaders_template(), "xlsx", "loader-import-template")

    def get_urls(self) -> list:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="loaders_loader_import"),
            path(
                "import/template/",
                self.admin_site.admin_view(self.import_template_view),
                name="loaders_loader_import_template",
            ),
            path(
                "import/<uuid:job_id>/",
                self.admin_site.admin_view(self.import_job_view),
                name="loaders_loader_import_job",
            ),
            path("export/", self.admin_site.admin_view(self.export_view), name="loaders_loader_export"),
            path(
                "export/<uuid:job_id>/",
                self.admin_site.admin_view(self.export_job_view),
                name="loaders_loader_export_job",
            ),
            path(
                "export/<uuid:job_id>/download/",
                self.admin_site.admin_view(self.export_download_view),
                name="loaders_loader_export_download",
            ),
            path(
                "<int:pk>/start-draft/",
                self.admin_site.admin_view(require_POST(self.start_draft_view)),
                name="loaders_loader_start_draft",
            ),
            *super().get_urls(),
        ]

    def start_draft_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        loader = get_object_or_404(Loader, pk=pk)
        try:
            draft = services.loader_draft_start(user=request.user, loader=loader)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return HttpResponseRedirect(reverse("admin:loaders_loader_change", args=[pk]))
        return HttpResponseRedirect(version_url(draft))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra_context = extra_context or {}
        holds = key_holds(self.opts.pk, unquote(object_id))  # else Django's page says it does not exist
        loader = selectors.loader_detail_list().filter(pk=unquote(object_id)).first() if holds else None
        version_policy = policy_for(request.user, LoaderVersion)
        if loader is not None:
            open_version = loader.open_version
            active = loader.active_version
            extra_context.update(
                active_version=active,
                active_schedule=_schedule_display(active, version_policy) if active else "",
                active_schedule_words=_schedule_words(active, version_policy) if active else "",
                active_decided_at=local_time(active.decided_at) if active else "",
                open_version=open_version,
                open_version_url=version_url(open_version) if open_version else None,
                can_start_draft=request.user.has_perm("loaders.change_loaderversion") and open_version is None,
                versions=[
                    (
                        v,
                        version_url(v),
                        state_badge(v.state),
                        _schedule_display(v, version_policy),
                        _schedule_words(v, version_policy),
                        local_time(v.decided_at) if v.decided_at else "—",
                    )
                    for v in selectors.loader_versions(loader=loader)
                ],
            )
        return super().change_view(request, object_id, form_url, extra_context)


def _filters_applied(changelist: Any) -> list[tuple[str, str]]:
    """(title, chosen value) of each list filter in use, so the export page says what it exports."""
    return [
        (str(spec.title), str(choice["display"]))
        for spec in changelist.filter_specs
        if spec.used_parameters
        for choice in spec.choices(changelist)
        if choice["selected"]
    ]


# --- versions ----------------------------------------------------------------------


class LoaderVersionForm(forms.ModelForm):
    """The draft's contract. Secrets and MASKED fields are write-only: an empty
    input keeps the stored value; the clear box removes a stored secret."""

    connection_password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown. Leave empty to keep the current value.",
    )
    clear_connection_password = forms.BooleanField(required=False, label="Clear the stored password")
    masked_fields: tuple[str, ...] = ()  # set per request by LoaderVersionAdmin.get_form

    class Meta:
        model = LoaderVersion
        fields = LoaderVersion.CONTRACT_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.masked_fields:
            if name in self.fields:
                self.fields[name].widget = forms.PasswordInput(render_value=False)
                self.fields[name].required = False
                self.fields[name].help_text = "Masked for your role. Leave empty to keep the current value."

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in self.masked_fields:
            if name in cleaned and cleaned[name] in (None, ""):
                cleaned[name] = getattr(self.instance, name)  # empty = keep; validates as before
        return cleaned

    def _post_clean(self) -> None:
        for name in self.masked_fields:
            if name in self.cleaned_data and self.cleaned_data[name] in (None, ""):
                self.cleaned_data[name] = self.initial.get(name)
        super()._post_clean()

    def contract_changes(self) -> dict[str, Any]:
        data = {
            f: self.cleaned_data[f]
            for f in LoaderVersion.CONTRACT_FIELDS
            if f in self.cleaned_data
            and f not in LoaderVersion.SECRET_FIELDS
            and self.cleaned_data[f] != self.initial.get(f)
        }
        if self.cleaned_data.get("clear_connection_password"):
            data["connection_password"] = ""
        elif self.cleaned_data.get("connection_password"):
            data["connection_password"] = self.cleaned_data["connection_password"]
        return data


class AwaitingMyApprovalFilter(admin.SimpleListFilter):
    title = "for me"
    parameter_name = "for_me"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("approve", "Waiting for my approval")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "approve":
            ids = selectors.versions_awaiting_approval(user=request.user).values("pk")
            return queryset.filter(pk__in=ids)
        return queryset


@admin.register(LoaderVersion)
class LoaderVersionAdmin(ServiceErrorMessagesMixin, ProtectedFieldsAdminMixin, ReadOnlyHistoryAdmin):
    form = LoaderVersionForm
    list_display = ("__str__", "state_display", "owner", "created_by", "submitted_by", "submitted_at", "decided_by")
    list_filter = (AwaitingMyApprovalFilter, "state", "loader__owner")
    search_fields = ("loader__loader_code", "loader__name")

    def get_list_display(self, request: HttpRequest) -> list[str]:
        return [c for c in self.list_display if not (c == "owner" and _loader_field_protected(request, "owner"))]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        hide = _loader_field_protected(request, "owner")
        return [f for f in self.list_filter if not (hide and f == "loader__owner")]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        hide = _loader_field_protected(request, "name")
        return [f for f in self.search_fields if not (hide and f == "loader__name")]

    list_select_related = ("loader", "loader__owner", "created_by", "submitted_by", "decided_by")
    change_form_template = "admin/loaders/loaderversion/change_form.html"
    history_list_display = ("state",)
    meta_fields = (
        "loader_link",
        "number",
        "state_display",
        "based_on",
        "created_by",
        "created_at_local",
        "submitted_by",
        "submitted_at_local",
        "decided_by",
        "decided_at_local",
        "decision_comment",
    )
    fieldsets_spec = (
        ("What it loads", ("description", "source_system", "target")),
        ("Schedule", ("schedule_cron", "schedule_timezone", "grace_minutes")),
        (
            "Expectations",
            ("max_duration_minutes", "expected_rows_min", "expected_rows_max", "freshness_sla_minutes"),
        ),
        ("Alerting", ("default_severity", "notification_hint")),
        (
            "Connection",
            ("connection_host", "connection_port", "connection_database", "connection_user", "connection_password"),
        ),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # drafts start from the loader page ("Edit draft")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # versions are the audit trail

    def has_change_permission(self, request: HttpRequest, obj: LoaderVersion | None = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or obj.state == VersionState.DRAFT)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        policy = self._policy(request)
        masked = tuple(sorted(policy.masked - policy.secrets))
        return type(form.__name__, (form,), {"masked_fields": masked})

    def get_fieldsets(self, request: HttpRequest, obj: LoaderVersion | None = None) -> list:
        editable = obj is not None and self.has_change_permission(request, obj)
        policy = self._policy(request)
        sets = [("Version", {"fields": self.meta_fields})]
        for title, fields in self.fieldsets_spec:
            shown: list[str] = []
            for name in fields:
                if name in policy.hidden:
                    continue
                if name == "schedule_timezone" and obj is not None and _schedule_words(obj, policy):
                    shown.append("schedule_in_words")
                if name in policy.secrets:
                    shown += [name, "masked__" + name, "clear_" + name] if editable else ["masked__" + name]
                elif name in policy.masked and not editable:
                    shown.append("masked__" + name)
                else:
                    shown.append(name)
            if shown:
                sets.append((title, {"fields": tuple(shown)}))
        return sets

    def get_readonly_fields(self, request: HttpRequest, obj: LoaderVersion | None = None) -> tuple[str, ...]:
        policy = self._policy(request)
        masked = tuple("masked__" + f for f in sorted(policy.masked))
        readonly = (*self.meta_fields, *masked, "schedule_in_words")
        if obj is not None and not self.has_change_permission(request, obj):
            contract = tuple(f for f in LoaderVersion.CONTRACT_FIELDS if f not in policy.masked)
            return (*readonly, *contract)
        return (*readonly, *sorted(policy.locked))

    @admin.display(description="loader")
    def loader_link(self, obj: LoaderVersion) -> str:
        url = reverse("admin:loaders_loader_change", args=[obj.loader_id])
        policy = policy_for(_admin_user.get(None), Loader)
        if "name" in policy.hidden:
            return format_html('<a href="{}">{}</a>', url, obj.loader.loader_code)
        return format_html(
            '<a href="{}">{} — {}</a>', url, obj.loader.loader_code, policy.display("name", obj.loader.name)
        )

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: LoaderVersion) -> str:
        return state_badge(obj.state)

    created_at_local = _local_time_column("created_at")
    submitted_at_local = _local_time_column("submitted_at")
    decided_at_local = _local_time_column("decided_at")

    @admin.display(description="schedule in words")
    def schedule_in_words(self, obj: LoaderVersion) -> str:
        # As saved: the words follow the stored expression, not one being typed.
        return _schedule_words(obj, policy_for(_admin_user.get(None), LoaderVersion)) or "—"

    @admin.display(description="owner", ordering="loader__owner__name")
    def owner(self, obj: LoaderVersion) -> str:
        return obj.loader.owner.name

    def save_model(self, request: HttpRequest, obj: LoaderVersion, form: LoaderVersionForm, change: bool) -> None:
        services.loader_version_update(user=request.user, version=obj, data=form.contract_changes())

    def response_change(self, request: HttpRequest, obj: LoaderVersion) -> HttpResponse:
        """ "Save and submit for approval": the edit on the page was just saved (an invalid one never
        gets here: the form shows its errors), then the version is submitted."""
        if "_submit_for_approval" not in request.POST:
            return super().response_change(request, obj)
        label = f"{obj.loader.loader_code} v{obj.number}"
        try:
            services.loader_version_submit(
                user=request.user, version=obj, comment=request.POST.get("submit_comment", "")
            )
        except ServiceError as exc:
            messages.error(request, f"{label} was saved but not submitted for approval: {exc.message}")
        else:
            messages.success(request, f"{label} saved and submitted for approval.")
        return HttpResponseRedirect(version_url(obj))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if request.method == "POST" and "_submit_for_approval" in request.POST:
            # Only an invalid form is rendered after a POST: say why nothing was submitted.
            context.update(submit_refused=True, submit_comment=request.POST.get("submit_comment", ""))
        return super().render_change_form(request, context, *args, **kwargs)

    def get_urls(self) -> list:
        return [
            path(
                "<int:pk>/do/<str:action>/",
                self.admin_site.admin_view(self.transition_view),
                name="loaders_loaderversion_transition",
            ),
            *super().get_urls(),
        ]

    def transition_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        version = get_object_or_404(LoaderVersion.objects.select_related("loader"), pk=pk)
        back = HttpResponseRedirect(version_url(version))
        if action not in (
            services.ACTION_SUBMIT,
            services.ACTION_WITHDRAW,
            services.ACTION_APPROVE,
            services.ACTION_REJECT,
        ):
            messages.error(request, f"Unknown action {action!r}.")
            return back
        if action == services.ACTION_REJECT and (
            request.method != "POST" or not request.POST.get("reason", "").strip()
        ):
            return self._reject_form(request, version, submitted=request.method == "POST")
        if request.method != "POST":
            return back
        comment = request.POST.get("comment", "").strip()
        run = {
            services.ACTION_SUBMIT: lambda: services.loader_version_submit(
                user=request.user, version=version, comment=comment
            ),
            services.ACTION_WITHDRAW: lambda: services.loader_version_withdraw(
                user=request.user, version=version, comment=comment
            ),
            services.ACTION_APPROVE: lambda: services.loader_version_approve(
                user=request.user, version=version, comment=comment
            ),
            services.ACTION_REJECT: lambda: services.loader_version_reject(
                user=request.user, version=version, reason=request.POST.get("reason", "")
            ),
        }[action]
        try:
            run()
        except ServiceError as exc:
            messages.error(request, str(exc) if isinstance(exc, InvalidInput) else exc.message)
            return back
        done = {
            services.ACTION_SUBMIT: "submitted for approval",
            services.ACTION_WITHDRAW: "withdrawn; it is a draft again",
            services.ACTION_APPROVE: "approved; it is now the active version",
            services.ACTION_REJECT: "rejected",
        }[action]
        messages.success(request, f"{version.loader.loader_code} v{version.number} {done}.")
        return back

    def _reject_form(self, request: HttpRequest, version: LoaderVersion, submitted: bool) -> HttpResponse:
        if submitted:
            messages.error(request, "A reason is required to reject a version.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "version": version,
            "title": f"Reject {version.loader.loader_code} v{version.number}",
            "allowed": services.loader_version_allowed_actions(user=request.user, version=version),
        }
        return TemplateResponse(request, "admin/loaders/loaderversion/reject.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        extra_context = extra_context or {}
        holds = key_holds(self.opts.pk, unquote(object_id))  # else Django's page says it does not exist
        version = (
            LoaderVersion.objects.select_related("loader", "submitted_by").filter(pk=unquote(object_id)).first()
            if holds
            else None
        )
        if version is not None:
            extra_context["allowed_actions"] = services.loader_version_allowed_actions(
                user=request.user, version=version
            )
            extra_context["comparison"] = version_comparison(version, self._policy(request))
            if version.submitted_by_id is not None:
                extra_context["submission_sentence"] = (
                    f"Submitted by {_username(version.submitted_by)} at {local_time(version.submitted_at)}."
                )
            # Why an approver may not approve (four-eyes) helps them; telling an Editor that their
            # role cannot approve does not: they never could, and the page has no such button.
            if (
                version.state == VersionState.PENDING_APPROVAL
                and services.ACTION_APPROVE not in extra_context["allowed_actions"]
                and request.user.has_perm("loaders.approve_loaderversion")
            ):
                try:
                    services.loader_version_action_check(
                        user=request.user, version=version, action=services.ACTION_APPROVE
                    )
                except ServiceError as exc:
                    extra_context["approve_refusal"] = exc.message
        return super().change_view(request, object_id, form_url, extra_context)


def _schedule_words(version: LoaderVersion, policy: FieldPolicy) -> str:
    """The schedule in words ("At 02:30, Europe/Berlin time"), or "" when the role may not read it."""
    if {"schedule_cron", "schedule_timezone"} & (policy.hidden | policy.masked):
        return ""
    if not version.schedule_cron:
        return "On demand"
    return f"{cron_words(version.schedule_cron)}, {version.schedule_timezone} time"


def _schedule_display(version: LoaderVersion, policy: FieldPolicy) -> str:
    parts = []
    for name in ("schedule_cron", "schedule_timezone"):
        if name in policy.hidden:
            continue
        value = getattr(version, name) or ("on demand" if name == "schedule_cron" else "")
        parts.append(str(policy.display(name, value)))
    return " ".join(parts) or MASK


def version_comparison(version: LoaderVersion, policy: FieldPolicy) -> dict[str, Any] | None:
    """Field-by-field differences under the viewer's field policy (HIDDEN fields say only that they
    changed, MASKED ones are masked): a draft or pending version against the ACTIVE one; an approved
    (ACTIVE or SUPERSEDED) version against the version approved before it, so "what did version 7
    change?" has an answer after the fact (an anomaly incident links here)."""
    if version.state in (VersionState.DRAFT, VersionState.PENDING_APPROVAL):
        against = LoaderVersion.objects.filter(loader_id=version.loader_id, state=VersionState.ACTIVE).first()
        approved = False
    elif version.state in (VersionState.ACTIVE, VersionState.SUPERSEDED) and version.decided_at is not None:
        against = (
            LoaderVersion.objects.filter(
                loader_id=version.loader_id,
                state__in=[VersionState.ACTIVE, VersionState.SUPERSEDED],
                decided_at__lt=version.decided_at,
            )
            .order_by("-decided_at", "-number")
            .first()
        )
        approved = True
    else:
        return None
    if against is None:
        return {"against": None, "rows": [], "approved": approved}
    rows = []
    for field in LoaderVersion.CONTRACT_FIELDS:
        old, new = getattr(against, field), getattr(version, field)
        if old == new:
            continue
        label = str(LoaderVersion._meta.get_field(field).verbose_name)
        if field in policy.masked or field in policy.hidden:
            old, new = (
                (MASK if old not in ("", None) else "(not set)"),
                (f"{MASK} (changed)" if new not in ("", None) else "(cleared)"),
            )
        rows.append((label, "—" if old in ("", None) else old, "—" if new in ("", None) else new))
    return {"against": against, "rows": rows, "approved": approved}


@admin.register(PendingApproval)
class PendingApprovalAdmin(ViewOnlyAdmin):
    """ "Waiting for my approval": pending versions the current user may decide on."""

    list_display = ("review_link", "loader_name", "owner", "submitted_by", "submitted_at")
    list_display_links = None
    search_fields = ("loader__loader_code", "loader__name")
    protected_columns = {"loader_name": "name", "owner": "owner"}

    def get_list_display(self, request: HttpRequest) -> list[str]:
        return [
            c
            for c in self.list_display
            if c not in self.protected_columns or not _loader_field_protected(request, self.protected_columns[c])
        ]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        hide = _loader_field_protected(request, "name")
        return [f for f in self.search_fields if not (hide and f == "loader__name")]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return selectors.versions_awaiting_approval(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("loaders.approve_loaderversion")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("loaders.approve_loaderversion")

    @admin.display(description="version")
    def review_link(self, obj: LoaderVersion) -> str:
        return format_html('<a href="{}">Review {} v{}</a>', version_url(obj), obj.loader.loader_code, obj.number)

    @admin.display(description="name")
    def loader_name(self, obj: LoaderVersion) -> str:
        return obj.loader.name

    @admin.display(description="owner")
    def owner(self, obj: LoaderVersion) -> str:
        return obj.loader.owner.name
