"""Runs, signals and ingest tokens in the admin (runs and signals are read-only records)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.functional import cached_property

from etl_monitor.admin_input import KeyCheckingAdminMixin, ViewOnlyAdmin
from etl_monitor.errors import ServiceError
from etl_monitor.humanize import count_phrase, duration_words
from signals_app import tokens
from signals_app.models import IngestToken, Run, Signal


class CappedCountPaginator(Paginator):
    """Counting a table of millions of signals takes seconds; count at most 10,000."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count() if hasattr(self.object_list, "count") else super().count


@admin.register(Run)
class RunAdmin(ViewOnlyAdmin):
    list_display = ("loader", "status", "started_at", "duration_display", "rows_written", "source", "run_id")
    list_filter = ("status", "source", "no_active_version", "loader__owner")
    search_fields = ("loader__loader_code", "correlation_id", "=run_id")
    list_select_related = ("loader",)
    date_hierarchy = "started_at"
    paginator = CappedCountPaginator
    show_full_result_count = False

    @admin.display(description="duration", ordering="duration_seconds")
    def duration_display(self, obj: Run) -> str:
        return duration_words(obj.duration_seconds)


@admin.register(Signal)
class SignalAdmin(ViewOnlyAdmin):
    list_display = (
        "captured_at",
        "loader",
        "signal_key",
        "signal_value",
        "validation_status",
        "metric_type",
        "metric_source",
    )
    list_filter = ("validation_status", "metric_type", "metric_source")
    search_fields = ("=loader__loader_code", "=correlation_id", "signal_key")
    list_select_related = ("loader",)
    paginator = CappedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Signal]:
        return super().get_queryset(request).order_by("-captured_at")


class IngestTokenForm(forms.ModelForm):
    class Meta:
        model = IngestToken
        fields = ("loader", "kind", "name")


def token_usage(token: IngestToken, raw: str) -> str:
    """A ready-made line to use a new token with: the ping URL and a curl line for a ping key, a
    curl line starting a run for an API token (the loader page keeps these snippets, without the
    secret)."""
    base = settings.ETL_MONITOR_BASE_URL.rstrip("/")
    code = token.loader.loader_code
    if token.kind == IngestToken.Kind.PING:
        url = f"{base}/ping/{raw}/{code}"
        return f"Ping URL: {url} — at the end of the job: curl -fsS -m 10 --retry 3 {url} (add /start and /fail)."
    return (
        f"Start a run: curl -fsS -X POST {base}/api/v1/runs/ -H 'Authorization: Bearer {raw}' "
        f"-H 'Content-Type: application/json' -d '{{\"loader_code\": \"{code}\"}}'"
    )


@admin.register(IngestToken)
class IngestTokenAdmin(KeyCheckingAdminMixin, admin.ModelAdmin):
    """Create a token (its plaintext is shown once, in the confirmation message) or revoke one."""

    form = IngestTokenForm
    list_display = ("prefix", "loader", "kind", "name", "created_by", "created_at", "last_used_at", "revoked_at")
    list_filter = ("kind", ("revoked_at", admin.EmptyFieldListFilter))
    search_fields = ("loader__loader_code", "name", "prefix")
    list_select_related = ("loader", "created_by")
    autocomplete_fields = ("loader",)
    actions = ("revoke",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the record of who had access stays

    def save_model(self, request: HttpRequest, obj: IngestToken, form: forms.ModelForm, change: bool) -> None:
        token, raw = tokens.ingest_token_create(
            user=request.user,
            loader=form.cleaned_data["loader"],
            name=form.cleaned_data["name"],
            kind=form.cleaned_data["kind"],
        )
        obj.pk = token.pk
        # On the request, not on this admin: one ModelAdmin serves every request, and two people
        # creating tokens at once must each see their own.
        request.ingest_token_plaintext = raw  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: IngestToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(request, "ingest_token_plaintext", "")
        kind = "ping key" if obj.kind == IngestToken.Kind.PING else "token"
        messages.warning(request, f"Copy this {kind} now, it will not be shown again: {raw}")
        messages.info(request, token_usage(obj, raw))
        return HttpResponseRedirect("../")

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[IngestToken]) -> None:
        try:
            for token in queryset:
                tokens.ingest_token_revoke(user=request.user, token=token)
        except ServiceError as exc:
            messages.error(request, exc.message)
            return
        messages.success(request, f"{count_phrase(queryset.count(), 'token')} revoked.")
