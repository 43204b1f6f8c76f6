"""People's API tokens in the admin: seen without their key, revoked through the service.

Every staff user sees their own tokens here (and may revoke them); an Admin sees and revokes
everyone's. Tokens are issued only by POST /api/v1/auth/token/ (the key must reach its owner,
not an administrator), and never deleted: a revoked token stays for the record.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from etl_monitor.admin_input import ViewOnlyAdmin
from etl_monitor.errors import ServiceError
from etl_monitor.humanize import count_phrase
from etl_monitor.models import ApiToken
from etl_monitor.tokens import api_token_revoke


class TokenStateFilter(admin.SimpleListFilter):
    """Which tokens still work: what one looks for here, rather than a revocation date."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ViewOnlyAdmin):
    # The state next to its owner: the list is wider than the page, and the last column is cut off.
    list_display = ("key_prefix", "user", "name", "state", "expires_at", "last_used_at", "created_at")
    list_select_related = ("user",)
    search_fields = ("user__username", "name", "prefix")
    list_filter = (TokenStateFilter,)
    fields = (
        "user",
        "name",
        "key_prefix",
        "state",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    readonly_fields = fields
    actions = ("revoke_selected",)

    @admin.display(description="key")
    def key_prefix(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="state")
    def state(self, token: ApiToken) -> str:
        if token.revoked_at is not None:
            return "revoked"
        return "active" if token.is_active else "expired"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        tokens = super().get_queryset(request)
        if request.user.has_perm("etl_monitor.view_apitoken"):
            return tokens
        return tokens.filter(user=request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        if super().has_view_permission(request, obj):
            return True
        # Anyone with admin access may look at their own tokens (get_queryset shows only those).
        return self.has_module_permission(request) and (obj is None or obj.user_id == request.user.pk)

    @admin.action(description="Revoke the selected API tokens")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = already = 0
        for token in queryset:
            if token.revoked_at is not None:
                already += 1  # revoking is idempotent; counting it as revoked now would mislead
                continue
            try:
                api_token_revoke(user=request.user, token=token)
            except ServiceError as exc:
                self.message_user(request, f"{token}: {exc.message}", messages.ERROR)
                continue
            revoked += 1
        if revoked:
            pronoun = "it" if revoked == 1 else "they"
            self.message_user(
                request, f"{count_phrase(revoked, 'API token')} revoked; {pronoun} can never be used again."
            )
        if already:
            self.message_user(
                request, f"{already} was already revoked." if already == 1 else f"{already} were already revoked."
            )
