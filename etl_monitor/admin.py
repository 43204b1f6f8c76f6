"""Admin for platform settings: field protection; people's API tokens are in token_admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect

from etl_monitor import token_admin, vendor_admin  # noqa: F401 - register the API token admin, safer library admins
from etl_monitor.admin_input import KeyCheckingAdminMixin
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from etl_monitor.models import FieldProtection
from etl_monitor.protection import protectable_fields, protectable_models, secret_fields


class ServiceErrorMessagesMixin:
    """A refusal a service raises while the admin saves, shown instead of a 500.

    Input the service refuses (InvalidInput, each problem named by field) brings the form back as it
    was typed, each problem under its field (or above the form for a name the form does not show),
    and nothing saved: the save ran in the admin's transaction, rolled back by the refusal. Other
    refusals (a permission, a state) are a message on the page the person came from."""

    def changeform_view(self, request: HttpRequest, object_id: str | None = None, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().changeform_view(request, object_id, *args, **kwargs)
        except InvalidInput as exc:
            if request.method == "POST" and exc.errors and not hasattr(request, "service_refusal"):
                request.service_refusal = exc
                return self.changeform_view(request, object_id, *args, **kwargs)
            messages.error(request, str(exc))
        except ServiceError as exc:
            messages.error(request, exc.message)
        return HttpResponseRedirect(request.get_full_path())

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        refusal: InvalidInput | None = getattr(request, "service_refusal", None)
        if refusal is None:
            return form

        class Refused(form):
            def clean(self) -> Any:
                data = super().clean()
                for field, problems in refusal.errors.items():
                    if field in self.fields:
                        self.add_error(field, problems)
                    else:
                        self.add_error(None, [f"{field}: {problem}" for problem in problems])
                return data

        Refused.__name__ = form.__name__
        return Refused


class FieldProtectionForm(forms.ModelForm):
    model_label = forms.ChoiceField(label="Model", choices=())
    field_name = forms.ChoiceField(label="Field", choices=())

    class Meta:
        model = FieldProtection
        fields = ("model_label", "field_name", "level", "exempt_groups", "note")
        widgets = {"note": forms.TextInput(attrs={"class": "vLargeTextField"})}  # room to read the reason

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The admin leaves read-only fields out of the form: the model and field of a built-in
        # rule, and every field for someone who may only view rules.
        if "model_label" in self.fields:
            self.fields["model_label"].choices = [(m, m) for m in protectable_models()]
        if "field_name" in self.fields:
            choices = []
            for label in protectable_models():
                for name in protectable_fields(label) or ():
                    suffix = " (secret: always masked)" if name in secret_fields(label) else ""
                    choices.append((name, f"{label}.{name}{suffix}"))
            self.fields["field_name"].choices = sorted(set(choices), key=lambda c: c[1])


@admin.register(FieldProtection)
class FieldProtectionAdmin(KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    """Admins choose, per field, HIDDEN / MASKED / LOCKED and the roles exempt from it."""

    form = FieldProtectionForm
    # Declared, so a built-in rule's read-only model and field stay on top instead of trailing the form.
    fields = ("model_label", "field_name", "is_builtin", "level", "exempt_groups", "note")
    list_display = ("model_label", "field_name", "level", "exempt_roles", "is_builtin", "note")
    list_filter = ("model_label", "level", "is_builtin")
    filter_horizontal = ("exempt_groups",)
    actions = ("delete_selected",)

    @admin.display(description="exempt roles")
    def exempt_roles(self, obj: FieldProtection) -> str:
        return ", ".join(g.name for g in obj.exempt_groups.all()) or "—"

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).prefetch_related("exempt_groups")

    def get_fields(self, request: HttpRequest, obj: FieldProtection | None = None) -> tuple[str, ...]:
        # "built in" (read-only, with its help text) only where it says why the rule cannot be deleted.
        builtin = obj is not None and obj.is_builtin
        return tuple(name for name in self.fields if name != "is_builtin" or builtin)

    def get_readonly_fields(self, request: HttpRequest, obj: FieldProtection | None = None) -> tuple[str, ...]:
        return ("model_label", "field_name", "is_builtin") if obj is not None and obj.is_builtin else ()

    @admin.action(description="Delete selected field protections", permissions=["delete"])
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[FieldProtection]) -> Any:
        # Django's own action would answer a built-in rule in the selection with "your account
        # doesn't have permission to delete … field protection", which reads as a missing role.
        builtin = [str(rule) for rule in queryset if rule.is_builtin]
        if builtin:
            self.message_user(
                request,
                f"Built-in rules cannot be deleted (change their level instead): {', '.join(builtin)}. "
                "Nothing was deleted.",
                messages.ERROR,
            )
            return None
        return delete_selected(self, request, queryset)

    def has_delete_permission(self, request: HttpRequest, obj: FieldProtection | None = None) -> bool:
        return super().has_delete_permission(request, obj) and not (obj is not None and obj.is_builtin)
