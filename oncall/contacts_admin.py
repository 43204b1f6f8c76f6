"""Contact methods and paging preferences in the admin.

Phones are private (``oncall.view_contactmethod`` is held by Operators and Admins only), yet every
person, a Viewer too, manages their own here: these admins grant each person their own rows and
filter the rest away, and the services (``oncall.contacts``) make the same check again on write.
Only an Admin (``change_contactmethod``) changes someone else's. A contact method is not edited in
place: its value is read-only (a new number is a new row that needs its own code); the change page
of a phone sends the verification code and takes it back.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from etl_monitor.admin import ServiceErrorMessagesMixin
from etl_monitor.admin_input import KeyCheckingAdminMixin, key_holds
from etl_monitor.errors import InvalidInput, ServiceError
from etl_monitor.history_admin import ReadOnlyHistoryAdmin
from loaders.models import Severity
from oncall import contacts
from oncall.models import ContactKind, ContactMethod, PagingPreference

SEND_CODE = "_send_code"


def _refusal(exc: ServiceError) -> str:
    return str(exc) if isinstance(exc, InvalidInput) else exc.message


def _staff(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


class ContactMethodForm(forms.ModelForm):
    """Adding: kind and value (and whose, for an Admin). Changing a phone: the code it was sent."""

    code = forms.CharField(
        required=False,
        max_length=12,
        label="Verification code",
        help_text="The six digits texted to this phone by “Send verification code”.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    class Meta:
        model = ContactMethod
        fields = ("user", "kind", "value")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "kind" in self.fields and data.get("kind") and data.get("value"):
            try:
                data["value"] = contacts.contact_value_normalise(data["kind"], data["value"])
            except InvalidInput as exc:
                for field, problems in exc.errors.items():
                    self.add_error(field, problems)
        return data


class OwnRowsAdmin(ServiceErrorMessagesMixin, KeyCheckingAdminMixin, ReadOnlyHistoryAdmin):
    """Rows that belong to a person (``user``): each person sees and changes their own, whatever
    their role; ``view_all`` shows everyone's, ``change_all`` changes them."""

    view_all: str
    change_all: str

    def _sees_all(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.view_all)

    def _manages_all(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.change_all)

    def _own(self, request: HttpRequest, obj: Any) -> bool:
        return obj is None or obj.user_id == request.user.pk

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _staff(request) and (self._own(request, obj) or self._sees_all(request))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _staff(request) and (self._own(request, obj) or self._manages_all(request))

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request).select_related("user")
        return queryset if self._sees_all(request) else queryset.filter(user=request.user)


@admin.register(ContactMethod)
class ContactMethodAdmin(OwnRowsAdmin):
    form = ContactMethodForm
    list_display = ("value", "kind", "user", "verification")
    list_filter = ("kind",)
    search_fields = ("value", "user__username")
    autocomplete_fields = ("user",)
    actions = ("send_verification_code", "delete_selected")

    view_all = "oncall.view_contactmethod"
    change_all = "oncall.change_contactmethod"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return _staff(request)

    def has_delete_permission(self, request: HttpRequest, obj: ContactMethod | None = None) -> bool:
        return self.has_change_permission(request, obj)

    # --- the form ----------------------------------------------------------------------------------

    def _awaits_code(self, request: HttpRequest, obj: ContactMethod | None) -> bool:
        return (
            obj is not None
            and obj.kind == ContactKind.PHONE
            and obj.verified_at is None
            and self.has_change_permission(request, obj)
        )

    def get_fields(self, request: HttpRequest, obj: ContactMethod | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("user", "kind", "value") if self._manages_all(request) else ("kind", "value")
        return ("user", "kind", "value", "verification", *(("code",) if self._awaits_code(request, obj) else ()))

    def get_readonly_fields(self, request: HttpRequest, obj: ContactMethod | None = None) -> tuple[str, ...]:
        return () if obj is None else ("user", "kind", "value", "verification")

    def get_form(
        self, request: HttpRequest, obj: ContactMethod | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if "user" in form.base_fields:
            form.base_fields["user"].initial = request.user.pk
        return form

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None) -> Any:
        obj = self.get_object(request, object_id) if key_holds(self.opts.pk, unquote(object_id)) else None
        extra = {"send_code_button": SEND_CODE if self._awaits_code(request, obj) else "", **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description="verified")
    def verification(self, obj: ContactMethod) -> str:
        if obj.verified_at:
            return format_html(
                '<span class="badge badge-resolved">Verified</span> {}', f"{obj.verified_at:%Y-%m-%d %H:%M}"
            )
        if obj.code_sent_at:
            return format_html(
                '<span class="badge badge-medium">Code sent</span> {}', f"{obj.code_sent_at:%H:%M}: enter it to verify"
            )
        return format_html('<span class="badge badge-none">Not verified</span> {}', "pages do not go here yet")

    # --- writes, all through oncall.contacts --------------------------------------------------------

    def save_model(self, request: HttpRequest, obj: ContactMethod, form: ContactMethodForm, change: bool) -> None:
        if not change:
            data = form.cleaned_data
            method = contacts.contact_add(
                user=request.user, owner=data.get("user") or request.user, kind=data["kind"], value=data["value"]
            )
            obj.pk, obj.user, obj.verified_at = method.pk, method.user, method.verified_at
            return
        # A refusal here is a message, not an exception: the admin's transaction must keep a wrong
        # code's count (an exception would roll it back and allow endless guesses).
        try:
            if SEND_CODE in request.POST:
                contacts.phone_verification_send(user=request.user, method=obj)
                minutes = settings.ONCALL_VERIFY_CODE_MINUTES
                messages.success(request, f"A code was texted to {obj.value}: enter it below within {minutes} minutes.")
            elif form.cleaned_data.get("code"):
                contacts.phone_verify(user=request.user, method=obj, code=form.cleaned_data["code"])
                messages.success(request, f"{obj.value} is verified: pages can go there now.")
        except ServiceError as exc:
            messages.error(request, _refusal(exc))

    def response_change(self, request: HttpRequest, obj: ContactMethod) -> HttpResponse:
        """Back to the phone's page (the messages say what happened): the next step is there."""
        return HttpResponseRedirect(reverse("admin:oncall_contactmethod_change", args=[obj.pk]))

    def delete_model(self, request: HttpRequest, obj: ContactMethod) -> None:
        contacts.contact_delete(user=request.user, method=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ContactMethod]) -> None:
        for method in queryset:
            contacts.contact_delete(user=request.user, method=method)

    @admin.action(description="Send verification code")
    def send_verification_code(self, request: HttpRequest, queryset: QuerySet[ContactMethod]) -> None:
        for method in queryset:
            try:
                contacts.phone_verification_send(user=request.user, method=method)
            except ServiceError as exc:
                messages.error(request, f"{method.value}: {_refusal(exc)}")
            else:
                messages.success(request, f"A code was texted to {method.value}: enter it on its page.")


SEVERITY_CHOICES = Severity.choices


class PagingPreferenceForm(forms.ModelForm):
    """Per-severity checkboxes; the service checks the values and the quiet hours."""

    sms_severities = forms.MultipleChoiceField(
        choices=SEVERITY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label="By SMS"
    )
    voice_severities = forms.MultipleChoiceField(
        choices=SEVERITY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple, label="By a call"
    )
    quiet_severities = forms.MultipleChoiceField(
        choices=SEVERITY_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Still during quiet hours",
    )

    class Meta:
        model = PagingPreference
        fields = (
            "user",
            "sms_severities",
            "voice_severities",
            "quiet_start",
            "quiet_end",
            "quiet_severities",
            "timezone",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is None and not self.is_bound:
            # A first form shows what paging does today (the defaults), so setting quiet hours
            # alone does not switch every SMS and call off.
            for name in ("sms_severities", "voice_severities", "quiet_severities"):
                self.initial.setdefault(name, PagingPreference._meta.get_field(name).get_default())


@admin.register(PagingPreference)
class PagingPreferenceAdmin(OwnRowsAdmin):
    """ "My paging preferences": each person their own (one row, created on first save); an Admin
    everybody's."""

    form = PagingPreferenceForm
    list_display = ("user", "sms_severities", "voice_severities", "quiet_hours", "timezone")
    autocomplete_fields = ("user",)

    view_all = "oncall.view_pagingpreference"
    change_all = "oncall.change_pagingpreference"

    def has_add_permission(self, request: HttpRequest) -> bool:
        if not _staff(request):
            return False
        return self._manages_all(request) or not PagingPreference.objects.filter(user=request.user).exists()

    def has_delete_permission(self, request: HttpRequest, obj: PagingPreference | None = None) -> bool:
        return False  # no row means the defaults; a person sets theirs back with the form

    def get_fields(self, request: HttpRequest, obj: PagingPreference | None = None) -> tuple[str, ...]:
        fields = tuple(PagingPreferenceForm._meta.fields)
        return fields if obj is None and self._manages_all(request) else fields[1:]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        """A person who sees only their own goes straight to it ("My paging preferences")."""
        if self._sees_all(request):
            return super().changelist_view(request, extra_context)
        own = PagingPreference.objects.filter(user=request.user).first()
        if own is None:
            return HttpResponseRedirect(reverse("admin:oncall_pagingpreference_add"))
        return HttpResponseRedirect(reverse("admin:oncall_pagingpreference_change", args=[own.pk]))

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        obj = kwargs.get("obj")
        if obj is None or obj.user_id == request.user.pk:
            context["title"] = "My paging preferences"
        return super().render_change_form(request, context, *args, **kwargs)

    @admin.display(description="quiet hours")
    def quiet_hours(self, obj: PagingPreference) -> str:
        if obj.quiet_start is None:
            return "none"
        return f"{obj.quiet_start:%H:%M}–{obj.quiet_end:%H:%M}"

    def save_model(self, request: HttpRequest, obj: PagingPreference, form: PagingPreferenceForm, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in contacts.PREFERENCE_FIELDS if name in form.cleaned_data}
        owner = obj.user if change else (form.cleaned_data.get("user") or request.user)
        preference = contacts.preference_save(user=request.user, owner=owner, data=data)
        obj.pk, obj.user, obj.updated_at = preference.pk, preference.user, timezone.now()
